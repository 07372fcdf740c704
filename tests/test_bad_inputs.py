"""Every bad input we know a user can give, one row each: the command line, the Python API and
the user's own files (pool files, target folders, data files, records, routers, study folders).

Each row runs in a copy of one workspace holding a finished tiny study, a saved tiny target, an
EAGLE head and a LoRA adapter for it, a router, a data file and a pool file. It asserts that the
refusal is one line that says what is wrong (no traceback; exit status 2 on the command line)
and that no file of the workspace was changed, added or removed. Command-line rows say where the
target may load: "none" (the check must come before the load; loading fails the test), "tiny"
(a tiny random target) or "real" (the real loader, on the workspace's saved tiny target).
"""
from __future__ import annotations

import copy
import fcntl
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

import specsel.modeling.target
from drafters import NgramDrafter
from drafters.eagle import EagleDrafter
from drafters.eagle_head import new_eagle_head
from drafters.lora import lora_experts
from drafters.training.lora import new_lora
from specsel import Arm, Sampling, SpecEngine
from specsel.cli import main
from specsel.study import StudyConfig, StudyItem, load_pool, run_study
from specsel.testing import random_prompts

from conftest import target_model

PROMPT = [2, 3, 4, 2, 3]
NGRAM_POOL = "from drafters import NgramDrafter\n\n\ndef build_pool(target):\n    return {'ngram': NgramDrafter()}\n"


@dataclass
class Case:
    id: str
    run: list[str] | Callable[[Path], object]       # argv of `specsel` ({ws}: the workspace), or an API call
    needle: str                                     # the refusal says this
    setup: Callable[[Path], object] | None = None   # the user's doing before the run (e.g. damage a file)
    loader: str = "none"                            # where the target may load (command-line rows)


def cli(id, argv, needle, setup=None, loader="none") -> Case:
    return Case(id, argv, needle, setup, loader)


def api(id, call, needle, setup=None) -> Case:
    return Case(id, call, needle, setup)


def write(name: str, text: str | bytes) -> Callable[[Path], None]:
    """A setup that writes the file `name` of the workspace."""
    def setup(ws: Path) -> None:
        (ws / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    return setup


def truncate(name: str) -> Callable[[Path], None]:
    """A setup that cuts the file `name` of the workspace in half (an interrupted download or copy)."""
    def setup(ws: Path) -> None:
        os.truncate(ws / name, (ws / name).stat().st_size // 2)
    return setup


def tamper_router(ws: Path) -> None:
    path = ws / "router" / "router.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def hold_lock(ws: Path):
    """Another specsel process writing the study (a held flock on its .lock)."""
    held = open(ws / "study" / ".lock", "a+")
    fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    return held


def engine() -> SpecEngine:
    return SpecEngine(target_model("llama"), {"ngram": NgramDrafter()}, eos_token_id=1)


def gen(**kw) -> Callable[[Path], object]:
    """A SpecEngine.generate call with one argument made bad."""
    args = dict(prompts=[PROMPT], arms=Arm("ngram", 2), max_new_tokens=4)
    args.update(kw)
    return lambda ws: engine().generate(**args)


def study_config(**kw) -> Callable[[Path], object]:
    return lambda ws: StudyConfig(**kw).validate()


GEN = ["generate", "--prompt", "hi"]
STREAM = ["eval", "--domains", "t={ws}/tickets.jsonl"]
EVAL = [*STREAM, "--out", "{ws}/new"]
TINY = ["--pool", "{ws}/pool.py", "--settings", "drafter", "--learners", "hedgespec", "--bsz", "2", "--gamma", "2",
        "--max-new-tokens", "4", "--no-progress"]      # a quick study on the tiny target
REPLAY = ["replay", "--records", "{ws}/study/queries.jsonl"]
FIT = ["router", "fit", "--records", "{ws}/study/queries.jsonl", "--out", "{ws}/fitted"]

CASES = [
    # --- the command line: numbers and choices, refused before the target loads
    cli("generate gamma 0", [*GEN, "--gamma", "0"], "--gamma must be an integer in [1, 64] (got 0)"),
    cli("generate gamma 65", [*GEN, "--gamma", "65"], "a draft longer than 64 tokens cannot pay"),
    cli("generate gamma -3, no drafter", [*GEN, "--gamma", "-3", "--drafter", "none"], "--gamma must be"),
    cli("generate temperature -0.5", [*GEN, "--temperature", "-0.5"], "--temperature must be >= 0"),
    cli("generate temperature nan", [*GEN, "--temperature", "nan"], "--temperature must be >= 0 (got nan)"),
    cli("generate temperature inf", [*GEN, "--temperature", "inf"], "--temperature must be >= 0 (got inf)"),
    cli("generate top-p 1.5 (greedy)", [*GEN, "--top-p", "1.5"], "--top-p must be in (0, 1] (got 1.5)"),
    cli("generate top-p 0", [*GEN, "--temperature", "0.7", "--top-p", "0"], "--top-p must be in (0, 1]"),
    cli("generate top-k -1", [*GEN, "--temperature", "0.7", "--top-k", "-1"], "--top-k must be an integer >= 0"),
    cli("generate min-p 1", [*GEN, "--temperature", "0.7", "--min-p", "1"], "--min-p must be in [0, 1)"),
    cli("generate max-new-tokens 0", [*GEN, "--max-new-tokens", "0"], "--max-new-tokens must be an integer >= 1"),
    cli("generate seed -1", [*GEN, "--seed", "-1"], "--seed must be an integer in [0, "),
    cli("generate seed 2**64", [*GEN, "--seed", str(2**64)], "seeds are below 2**64"),
    cli("generate threads -1", [*GEN, "--threads", "-1"], "--threads must be an integer >= 1 (got -1)"),
    cli("generate threads 0", [*GEN, "--threads", "0"], "leave it out for torch's default"),
    cli("generate dtype float64", [*GEN, "--drafter", "none", "--dtype", "float64"], "unknown dtype"),
    cli("generate device tpu", [*GEN, "--device", "tpu"], "--device tpu: unknown device"),
    cli("generate device cuda without a GPU", [*GEN, "--device", "cuda"], "CUDA is not available"),
    cli("generate device map missing", [*GEN, "--device-map", "{ws}/nosuch.json"], "not auto or balanced, and no "
        "such file"),
    cli("eval device map not JSON", [*EVAL, "--device-map", "{ws}/tickets.jsonl"], "not valid JSON"),
    cli("generate unknown flag", [*GEN, "--gama", "4"], "unrecognized arguments: --gama 4; see specsel --help"),
    cli("generate unknown drafter", [*GEN, "--drafter", "nosuch"], "unknown drafter 'nosuch'"),
    cli("generate pool missing", [*GEN, "--pool", "{ws}/nosuch.py"], "nosuch.py: no such file"),
    cli("drafters pool missing", ["drafters", "--pool", "{ws}/nosuch.py"], "nosuch.py: no such file"),
    cli("eval limit 0", [*EVAL, "--limit", "0"], "--limit must be an integer >= 1 (got 0)"),
    cli("eval skip -1", [*EVAL, "--skip", "-1"], "--skip must be an integer >= 0 (got -1)"),
    cli("eval threads -1", [*EVAL, "--threads", "-1"], "--threads must be an integer >= 1 (got -1)"),
    cli("eval seed -1", [*EVAL, "--seed", "-1"], "--seed must be an integer in [0, "),
    cli("eval bsz 0", [*EVAL, "--bsz", "0,4"], "--bsz must be integers >= 1 (got 0)"),
    cli("eval gammas not integers", [*EVAL, "--gammas", "1,x"], "--gammas takes comma-separated integers"),
    cli("eval gammas 128", [*EVAL, "--gammas", "1,128"], "--gammas must be integers in [1, 64] (got 128)"),
    cli("eval gamma 2.5", [*EVAL, "--gamma", "2.5"], "--gamma takes an integer (got '2.5')"),
    cli("eval gamma 65", [*EVAL, "--gamma", "65"], "cannot pay"),
    cli("eval temperature nan", [*EVAL, "--temperature", "nan"], "--temperature must be >= 0"),
    cli("eval top-p 0", [*EVAL, "--top-p", "0"], "--top-p must be in (0, 1] (got 0.0)"),
    cli("eval top-k -5", [*EVAL, "--top-k", "-5"], "--top-k must be an integer >= 0 (got -5)"),
    cli("eval min-p 2", [*EVAL, "--min-p", "2"], "--min-p must be in [0, 1) (got 2.0)"),
    cli("eval repeats 0", [*EVAL, "--repeats", "0"], "--repeats must be an integer >= 1"),
    cli("eval score-every 0", [*EVAL, "--score-every", "0"], "--score-every must be an integer >= 1"),
    cli("eval fixed-candidates -1", [*EVAL, "--fixed-candidates", "-1"], "0 runs every fixed arm"),
    cli("eval dtype int8", [*EVAL, "--dtype", "int8"], "--dtype int8: unknown dtype"),
    cli("eval learners empty", [*EVAL, "--learners", ""], "--learners is empty"),
    cli("eval learner unknown", [*EVAL, "--learners", "hedgespec,thompson"], "unknown learner(s) thompson"),
    cli("eval router learner without a router", [*EVAL, "--learners", "router"], "need a router"),
    cli("eval setting unknown", [*EVAL, "--settings", "both"], "unknown setting(s) both"),
    cli("eval joint-hedgespec unknown", [*EVAL, "--joint-hedgespec", "bandit"], "must be one of factored, arms"),
    cli("eval drafters empty", [*EVAL, "--drafters", " , "], "--drafters is empty"),
    cli("eval drafter unknown", [*EVAL, "--drafters", "nosuch"], "unknown drafter(s) nosuch"),
    cli("eval domains empty", ["eval", "--domains", "", "--out", "{ws}/new"], "--domains is empty"),
    cli("eval domain unknown", ["eval", "--domains", "nosuch", "--out", "{ws}/new"], "nosuch"),
    cli("eval user domain file missing", ["eval", "--domains", "t={ws}/nosuch.jsonl", "--out", "{ws}/new"],
        "nosuch.jsonl"),
    cli("eval split unknown", [*EVAL, "--split", "test"], "invalid choice: 'test'"),
    cli("eval router folder missing", [*EVAL, "--router", "{ws}/nosuch"], "no router.json there"),
    cli("replay bsz 0", [*REPLAY, "--bsz", "0"], "--bsz must be integers >= 1 (got 0)"),
    cli("replay gammas 0", [*REPLAY, "--gammas", "1,0"], "--gammas must be integers in [1, 64] (got 0)"),
    cli("replay seed -1", [*REPLAY, "--seed", "-1"], "--seed must be an integer in [0, "),
    cli("replay learner unknown", [*REPLAY, "--learners", "thompson"], "unknown learner(s) thompson"),
    cli("replay drafter unknown", [*REPLAY, "--drafters", "eagle"], "no acceptance recorded for eagle"),
    cli("replay run unknown", [*REPLAY, "--run", "nosuch"], "no full-information run named nosuch"),
    cli("router fit folds 1", [*FIT, "--folds", "1"], "--folds must be an integer >= 2 (got 1)"),
    cli("router fit C 0", [*FIT, "--C", "0"], "--C must be > 0 (got 0.0)"),
    cli("router fit seed -1", [*FIT, "--seed", "-1"], "--seed must be an integer in [0, "),
    # --- the output folder
    cli("eval out is a file", [*STREAM, "--out", "{ws}/tickets.jsonl"], "is a file; pass a folder"),
    cli("eval out under a file", [*STREAM, "--out", "{ws}/tickets.jsonl/sub"], "lies under"),
    cli("eval out holds results", [*STREAM, "--out", "{ws}/study"], "pass --resume to continue them"),
    cli("eval out locked by another study", [*STREAM, "--out", "{ws}/study", "--resume"],
        "being written by another specsel process", setup=hold_lock),
    cli("eval resume with other options", [*STREAM, "--out", "{ws}/study", "--resume", *TINY],
        "was run with a different", loader="tiny"),
    # --- the user's files
    cli("records file missing", ["replay", "--records", "{ws}/nosuch.jsonl"], "no such file"),
    cli("records file is a folder", ["replay", "--records", "{ws}/study"], "is a folder; pass the queries.jsonl"),
    cli("records not JSON", ["replay", "--records", "{ws}/bad.jsonl"], "line 1 is not valid JSON",
        setup=write("bad.jsonl", "hello world\n")),
    cli("records line not an object", ["replay", "--records", "{ws}/bad.jsonl"],
        "line 1 is JSON but not an object (a list)", setup=write("bad.jsonl", "[1, 2]\n")),
    cli("records line 2 a number", ["replay", "--records", "{ws}/bad.jsonl"],
        "line 2 is JSON but not an object (a number)",
        setup=write("bad.jsonl", '{"round": 0, "gamma": 1, "committed": 1, "query": "q"}\n42\n')),
    cli("records damaged in the middle", ["replay", "--records", "{ws}/bad.jsonl"], "line 2 is not valid JSON",
        setup=write("bad.jsonl", '{"a": 1}\nnot json\n{"b": 2}\n')),
    cli("records missing fields", ["replay", "--records", "{ws}/bad.jsonl"], "record 1 has no 'round'",
        setup=write("bad.jsonl", '{"a": 1}\n')),
    cli("records query line missing bsz", ["replay", "--records", "{ws}/bad.jsonl"], "query line 1 has no 'bsz'",
        setup=write("bad.jsonl", '{"run": "x", "records": []}\n')),
    cli("records empty", ["replay", "--records", "{ws}/bad.jsonl"], "holds no records", setup=write("bad.jsonl", "")),
    cli("records binary", ["replay", "--records", "{ws}/bad.jsonl"], "not a text file",
        setup=write("bad.jsonl", bytes(range(128, 256)) * 4)),
    cli("study config.json damaged", REPLAY, "not a study's config.json", setup=write("study/config.json", "{oops")),
    cli("router fit, study config.json damaged", FIT, "config.json: not a study's config.json",
        setup=write("study/config.json", "{oops")),
    cli("resume, study config.json damaged", [*STREAM, "--out", "{ws}/study", "--resume", *TINY],
        "config.json: not a study's config.json", setup=write("study/config.json", "[1, 2]"), loader="tiny"),
    cli("pool file syntax error", [*EVAL, "--pool", "{ws}/bad.py"],
        "syntax error at line 1", setup=write("bad.py", "def build_pool(:\n"), loader="tiny"),
    cli("pool file import error", [*EVAL, "--pool", "{ws}/bad.py"],
        "No module named 'nosuchmodule_xyz'", setup=write("bad.py", "import nosuchmodule_xyz\n"), loader="tiny"),
    cli("pool file returns non-drafters", [*EVAL, "--pool", "{ws}/bad.py"],
        "returned 42 (int) for 'x', not a Drafter",
        setup=write("bad.py", "def build_pool(target):\n    return {'x': 42}\n"), loader="tiny"),
    cli("target weights truncated", [*GEN, "--target", "{ws}/target", "--drafter", "none"], "re-download the model",
        setup=truncate("target/model.safetensors"), loader="real"),
    cli("target config.json damaged", [*GEN, "--target", "{ws}/target", "--drafter", "none"], "config",
        setup=write("target/config.json", '{"model_type": "llama", '), loader="real"),
    cli("target folder without weights", [*GEN, "--target", "{ws}/tickets.jsonl", "--drafter", "none"],
        "tickets.jsonl", loader="real"),
    cli("router weights tampered", [*EVAL, *TINY, "--router", "{ws}/router"], "refit", setup=tamper_router),
    cli("user domain not JSON", ["eval", "--domains", "t={ws}/bad.jsonl", "--out", "{ws}/new"], "bad.jsonl",
        setup=write("bad.jsonl", "{not json\n")),
    cli("user domain without a prompt field", ["eval", "--domains", "t={ws}/bad.jsonl", "--out", "{ws}/new"],
        "bad.jsonl", setup=write("bad.jsonl", '{"question_id": 1}\n')),
    # --- the Python API
    api("prompts a string", gen(prompts="hello"), "encode"),
    api("prompt a string in a list", gen(prompts=["hello"]), "encode it with the tokenizer first"),
    api("prompt empty", gen(prompts=[[]]), "empty"),
    api("max_new_tokens 2.5", gen(max_new_tokens=2.5), "max_new_tokens must be an integer >= 1"),
    api("max_new_tokens None", gen(max_new_tokens=None), "max_new_tokens must be an integer >= 1"),
    api("seed -1", gen(seed=-1), "seed must be an integer >= 0"),
    api("arms a name", gen(arms="ngram"), "Arm"),
    api("arm gamma 65", lambda ws: Arm("ngram", 65), "use a gamma of at most 64"),
    api("arm of a drafter not in the pool", gen(arms=Arm("eagle", 2)), "eagle"),
    api("sampling a float", gen(sampling=0.7), "sampling must be None (greedy) or a Sampling"),
    api("Sampling temperature 0", lambda ws: Sampling(0.0), "use greedy decoding instead of 0"),
    api("Sampling top_k -1", lambda ws: Sampling(0.7, top_k=-1), "top_k must be an int >= 0"),
    api("Sampling min_p 1", lambda ws: Sampling(0.7, min_p=1.0), "min_p must be in [0, 1)"),
    api("pool one drafter under two names", lambda ws: (lambda d: SpecEngine(target_model("llama"), {"a": d, "b": d}))
        (NgramDrafter()), "same drafter object"),
    api("pool not drafters", lambda ws: SpecEngine(target_model("llama"), {"x": 42}), "x"),
    api("StudyConfig seed -1", study_config(seed=-1), "--seed must be an integer in [0, "),
    api("StudyConfig top_k -1", study_config(top_k=-1), "--top-k must be an integer >= 0"),
    api("StudyConfig gammas empty", study_config(gammas=()), "--gammas is empty"),
    api("load_pool bad file", lambda ws: load_pool(target_model("llama"), None, str(ws / "bad.py")),
        "line 2: the file fails to run: ZeroDivisionError", setup=write("bad.py", "x = 1\ny = 1 / 0\n")),
    api("run_study into a file", lambda ws: run_study(target_model("llama"), {"ngram": NgramDrafter()},
                                                     [StudyItem("q", "d", PROMPT)], StudyConfig(),
                                                     ws / "tickets.jsonl"), "is a file; pass a folder"),
    api("EAGLE head weights truncated", lambda ws: EagleDrafter(target_model("llama"), str(ws / "head")),
        "cannot read the EAGLE head's weights (SafetensorError", setup=truncate("head/model.safetensors")),
    api("EAGLE head config.json damaged", lambda ws: EagleDrafter(target_model("llama"), str(ws / "head")),
        "config.json: not valid JSON", setup=write("head/config.json", "{oops")),
    api("LoRA adapter weights truncated", lambda ws: lora_experts(target_model("llama"), new_eagle_head(
        target_model("llama"), 1, seed=1), {"x": ws / "adapter"}), "lora adapter 'x'",
        setup=truncate("adapter/adapter_model.safetensors")),
    api("LoRA adapter config damaged", lambda ws: lora_experts(target_model("llama"), new_eagle_head(
        target_model("llama"), 1, seed=1), {"x": ws / "adapter"}), "cannot be loaded",
        setup=write("adapter/adapter_config.json", "{oops")),
    api("load_target missing folder", lambda ws: specsel.modeling.target.load_target(str(ws / "nosuch")), "nosuch"),
]


# ----------------------------------------------------------------------------- the workspace


class Tok:
    """No chat template: a word's token is its length (plus 2: no pad or eos)."""
    chat_template = None
    eos_token_id = 1

    def __call__(self, text, **kw):
        return {"input_ids": [2 + len(w) for w in text.split()]}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    from drafters.pool import ROUTER_DIR

    ws = tmp_path_factory.mktemp("workspace")
    prompts = [p + p[:5] for p in random_prompts(4, min_len=3, max_len=12, seed=21)]
    cfg = StudyConfig(settings=("drafter",), learners=("hedgespec",), gamma=2, gammas=(2,), bsz=(2,),
                      max_new_tokens=4, seed=3)
    run_study(target_model("llama"), {"ngram": NgramDrafter()}, [StudyItem(f"d/{i}", "d", p) for i, p in
                                                                  enumerate(prompts)],
              cfg, ws / "study", eos_token_id=1, progress=False, log=lambda s: None, plots=False)
    target_model("llama").save_pretrained(ws / "target")
    head = new_eagle_head(target_model("llama"), 1, seed=1)
    head.save(ws / "head")
    new_lora(copy.deepcopy(head), rank=4, seed=1).save_pretrained(ws / "adapter")
    shutil.copytree(ROUTER_DIR, ws / "router")
    (ws / "tickets.jsonl").write_text("".join(json.dumps({"prompt": f"ticket number {i} about a thing"}) + "\n"
                                              for i in range(5)))
    (ws / "pool.py").write_text(NGRAM_POOL)
    return ws


@pytest.fixture
def ws(built, tmp_path) -> Path:
    out = tmp_path / "ws"
    shutil.copytree(built, out)
    return out


def snapshot(ws: Path) -> dict[str, str]:
    """Every file of the workspace and its content's hash."""
    return {str(p.relative_to(ws)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(ws.rglob("*")) if p.is_file()}


def use_loader(monkeypatch, loader: str) -> None:
    if loader == "none":
        def refuse(*args, **kwargs):
            raise AssertionError("the target loaded: the check must come before it")
        monkeypatch.setattr(specsel.modeling.target, "load_target", refuse)
    elif loader == "tiny":
        monkeypatch.setattr(specsel.modeling.target, "load_target", lambda *a, **kw: (target_model("llama"), Tok()))


def refusal(case: Case, ws: Path, monkeypatch, capsys) -> str:
    """The one line that refuses the case (asserting it is one line, without a traceback)."""
    if callable(case.run):
        with pytest.raises((ValueError, TypeError)) as info:
            case.run(ws)
        message = str(info.value)
        assert message and "\n" not in message, message
        return message
    use_loader(monkeypatch, case.loader)
    capsys.readouterr()
    try:
        status = main([arg.replace("{ws}", str(ws)) for arg in case.run])
    except SystemExit as exit:                  # argparse's own refusals (an unknown choice)
        status = exit.code
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.strip() and ": warning:" not in line]
    assert status == 2, err
    assert "Traceback" not in err, err
    if lines and lines[0].startswith("usage:"):
        lines = lines[1:]                       # argparse prints its usage line above the error
    assert len(lines) == 1, err
    assert lines[0].startswith("specsel"), err
    return lines[0]


@pytest.mark.usefixtures("clean_user_domains")
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_bad_input_is_one_line_and_changes_nothing(case, ws, monkeypatch, capsys):
    held = case.setup(ws) if case.setup else None
    try:
        before = snapshot(ws)
        message = refusal(case, ws, monkeypatch, capsys)
        assert case.needle in message, message
        assert snapshot(ws) == before, "a refused input changed, added or removed a file"
    finally:
        if hasattr(held, "close"):
            held.close()


def test_the_catalogue_is_big_and_has_no_twins():
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
