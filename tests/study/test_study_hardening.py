"""Hardening of the study: --resume refuses another dtype, device or changed prompts; bad options,
--out, --pool files and an early Ctrl-C give one line naming the fix; short domains and an empty
--resume say so. Tiny random models only; the command line runs with a fake target loader."""
import copy
import json
import shutil

import pytest
import torch

from drafters import NgramDrafter
from specsel.cli import main
from specsel.core.arms import MAX_GAMMA as MAX_STUDY_GAMMA
from specsel.study import StudyConfig, StudyError, StudyItem, load_pool, run_study
from specsel.study.plan import fullinfo_run, prompt_hash, study_record, target_record
from specsel.study.store import write_config
from specsel.testing import random_prompts

from conftest import target_model


def items(n=4, changed=()):
    """A one-domain stream; the queries at positions `changed` get another prompt under the same qid."""
    prompts = [p + p[:5] for p in random_prompts(n, min_len=3, max_len=12, seed=21)]
    return [StudyItem(f"d/{i}", "d", [t % 100 + 2 for t in p] if i in changed else p)
            for i, p in enumerate(prompts)]


def config(**kw):
    base = dict(settings=("drafter",), learners=("hedgespec",), gamma=2, gammas=(2,), bsz=(2,), max_new_tokens=4,
                seed=3)
    base.update(kw)
    return StudyConfig(**base)


def study(out, target=None, stream=None, resume=False, warn=None, cfg=None):
    return run_study(target if target is not None else target_model("llama"), {"ngram": NgramDrafter()},
                     stream or items(), cfg or config(), out, resume=resume, eos_token_id=1, progress=False,
                     log=lambda s: None, plots=False, warn=warn or (lambda s: None))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny study (float32, cpu); copy it before resuming into it."""
    out = tmp_path_factory.mktemp("finished") / "study"
    study(out)
    return out


@pytest.fixture
def copy_of(finished, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(finished, out)
    return out


NGRAM = "from drafters import NgramDrafter\n\n\n"         # the head of a --pool file


def one_line(err) -> str:
    msg = str(err.value)
    assert msg and "\n" not in msg
    return msg


def edit_config(out, change):
    path = out / "config.json"
    config = json.loads(path.read_text())
    change(config)
    path.write_text(json.dumps(config))


# --------------------------------------------------------------------------
# 1. dtype and device: recorded from the loaded model, part of the resume identity
# --------------------------------------------------------------------------


def test_config_records_the_targets_dtype_and_device(finished):
    config = json.loads((finished / "config.json").read_text())
    assert (config["dtype"], config["device"]) == ("float32", "cpu")
    assert target_record(target_model("llama")) == {"dtype": "float32", "device": "cpu"}
    assert target_record(object()) == {}


def test_resume_refuses_another_dtype(copy_of):
    bf16 = copy.deepcopy(target_model("llama")).to(torch.bfloat16)
    with pytest.raises(StudyError, match="dtype") as err:
        study(copy_of, target=bf16, resume=True)
    msg = one_line(err)
    assert "float32 -> bfloat16" in msg and "--dtype" in msg and "another --out" in msg
    study(copy_of, resume=True)                                     # the same dtype resumes


def test_resume_refuses_another_device(tmp_path):
    cfg = config()
    record = study_record(cfg, ["ngram"], items(), fullinfo_run(cfg, ["ngram"]), None, {"ngram": True},
                          target=target_model("llama"))
    write_config(tmp_path, record, resume=False)
    with pytest.raises(StudyError, match="device") as err:
        write_config(tmp_path, {**record, "device": "cuda"}, resume=True)
    assert "cpu -> cuda" in one_line(err) and "--device" in one_line(err)


def test_an_old_config_without_dtype_or_device_resumes_unchecked(copy_of):
    def forget(config):
        del config["dtype"], config["device"]
    edit_config(copy_of, forget)
    bf16 = copy.deepcopy(target_model("llama")).to(torch.bfloat16)
    study(copy_of, target=bf16, resume=True)                        # unknown then: not checked
    assert json.loads((copy_of / "config.json").read_text())["dtype"] == "bfloat16"   # recorded from now on


# --------------------------------------------------------------------------
# 2. the prompts of the stream: a hash per query, part of the resume identity
# --------------------------------------------------------------------------


def test_config_records_a_hash_of_each_prompt(finished):
    queries = json.loads((finished / "config.json").read_text())["queries"]
    assert [q["prompt_hash"] for q in queries] == [prompt_hash(it.prompt) for it in items()]
    assert prompt_hash([1, 2, 3]) != prompt_hash([1, 2, 4]) and len(prompt_hash([1])) == 16


def test_resume_refuses_changed_prompts_naming_one_query(copy_of):
    with pytest.raises(StudyError, match="prompt") as err:
        study(copy_of, stream=items(changed=(2,)), resume=True)
    msg = one_line(err)
    assert "d/2" in msg and "another --out" in msg


def test_an_old_config_without_prompt_hashes_resumes_unchecked(copy_of):
    def forget(config):
        for q in config["queries"]:
            del q["prompt_hash"]
    edit_config(copy_of, forget)
    study(copy_of, stream=items(changed=(2,)), resume=True)         # unknown then: not checked, as before
    queries = json.loads((copy_of / "config.json").read_text())["queries"]
    assert queries[2]["prompt_hash"] == prompt_hash(items(changed=(2,))[2].prompt)    # recorded from now on


# --------------------------------------------------------------------------
# 3, 5, 10: bad options are rows of tests/test_bad_inputs.py; here the cap itself
# --------------------------------------------------------------------------


def test_the_gamma_cap_is_the_engines():
    assert MAX_STUDY_GAMMA == 64
    config(gamma=64, gammas=(1, 64)).validate()


# --------------------------------------------------------------------------
# 6. --limit beyond a domain's size; --skip beyond it
# --------------------------------------------------------------------------


class Tok:
    """No chat template: a word's token is its length (plus 2: no pad or eos)."""
    chat_template = None
    eos_token_id = 1

    def __call__(self, text, **kw):
        return {"input_ids": [2 + len(w) for w in text.split()]}


@pytest.fixture
def tickets(tmp_path):
    path = tmp_path / "tickets.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"ticket number {i} about a thing"}) + "\n" for i in range(5)))
    return path


@pytest.mark.usefixtures("clean_user_domains")
def test_load_items_warns_once_per_short_domain(tickets):
    from specsel.data import resolve_domains
    from specsel.study.items import load_items

    names = resolve_domains(f"t={tickets}")
    said = []
    assert len(load_items(Tok(), names, limit=10, skip=1, warn=said.append)) == 4
    assert said == ["t has only 4 eval queries after --skip 1; using 4 (--limit 10)"]
    said.clear()
    assert len(load_items(Tok(), names, limit=5, warn=said.append)) == 5 and not said
    with pytest.raises(StudyError, match="t has no eval queries after --skip 5; lower --skip") as err:
        load_items(Tok(), names, limit=3, skip=5, warn=said.append)
    one_line(err)


# --------------------------------------------------------------------------
# 7. --resume with nothing to resume
# --------------------------------------------------------------------------


@pytest.mark.parametrize("make", [False, True])
def test_resume_into_an_empty_or_missing_folder_says_so_and_runs(make, tmp_path):
    out = tmp_path / "new"
    if make:
        out.mkdir()
    said = []
    study(out, resume=True, warn=said.append)
    assert len(said) == 1 and "nothing to resume in" in said[0] and str(out) in said[0]
    assert "starts from the beginning" in said[0] and "\n" not in said[0]
    assert (out / "queries.jsonl").stat().st_size > 0 and (out / "summary.csv").exists()


def test_resume_of_a_finished_study_says_nothing(copy_of):
    said = []
    study(copy_of, resume=True, warn=said.append)
    assert said == []


# --------------------------------------------------------------------------
# 6, 7 on the command line (a fake loader: the tiny target, Tok)
# --------------------------------------------------------------------------


@pytest.fixture
def tiny_loader(monkeypatch):
    import specsel.modeling.target
    monkeypatch.setattr(specsel.modeling.target, "load_target", lambda *a, **kw: (target_model("llama"), Tok()))


@pytest.fixture
def ngram_pool(tmp_path):
    path = tmp_path / "pool.py"
    path.write_text(NGRAM + "def build_pool(target):\n    return {'ngram': NgramDrafter()}\n")
    return path


@pytest.mark.usefixtures("clean_user_domains")
def test_eval_warns_of_a_short_domain_and_an_empty_resume(tickets, ngram_pool, tmp_path, tiny_loader, capsys):
    out = tmp_path / "out"
    argv = ["eval", "--domains", f"t={tickets}", "--pool", str(ngram_pool), "--settings", "drafter", "--learners",
            "hedgespec", "--bsz", "2", "--gamma", "2", "--gammas", "2", "--max-new-tokens", "4", "--limit", "10",
            "--no-progress", "--out", str(out)]
    assert main([*argv, "--resume"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert err == ["specsel eval: warning: t has only 5 eval queries; using 5 (--limit 10)",
                   f"specsel eval: warning: --resume: nothing to resume in {out} (no finished batch); the study "
                   "starts from the beginning"]
    assert json.loads((out / "config.json").read_text())["dtype"] == "float32"


# --------------------------------------------------------------------------
# 8. Ctrl-C: name queries.jsonl only when something was saved there
# --------------------------------------------------------------------------


@pytest.fixture
def interrupted_load(monkeypatch):
    import specsel.modeling.target

    def interrupt(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(specsel.modeling.target, "load_target", interrupt)


@pytest.mark.usefixtures("clean_user_domains")
def test_ctrl_c_before_any_batch_says_nothing_was_saved(tmp_path, tickets, interrupted_load, capsys):
    out = tmp_path / "out"
    assert main(["eval", "--domains", f"t={tickets}", "--out", str(out)]) == 130
    err = capsys.readouterr().err.strip()
    assert err == "specsel eval: interrupted before any batch finished; nothing was saved"
    assert not out.exists()


@pytest.mark.usefixtures("clean_user_domains")
def test_ctrl_c_with_saved_batches_names_them(copy_of, tickets, interrupted_load, capsys):
    assert main(["eval", "--domains", f"t={tickets}", "--out", str(copy_of), "--resume"]) == 130
    err = capsys.readouterr().err.strip()
    assert f"every finished batch is saved in {copy_of / 'queries.jsonl'}" in err and "--resume" in err


# --------------------------------------------------------------------------
# 9. --pool files that do not run or return anything but {name: Drafter}
# --------------------------------------------------------------------------


@pytest.mark.parametrize("text, match", [
    ("def build_pool(:\n", "syntax error at line 1"),
    ("import nosuchmodule_xyz\n", "line 1: ModuleNotFoundError: No module named 'nosuchmodule_xyz'"),
    ("x = 1\ny = 1 / 0\n", "line 2: the file fails to run: ZeroDivisionError"),
    ("def build_pool(target):\n    return {'x': 42}\n", "returned 42 (int) for 'x', not a Drafter"),
    (NGRAM + "def build_pool(target):\n    return {'x': NgramDrafter}\n", "for 'x', not a Drafter"),
    (NGRAM + "def build_pool(target):\n    return {3: NgramDrafter()}\n", "drafter name 3"),
    (NGRAM + "def build_pool(target):\n    return {'a,b': NgramDrafter()}\n", "without commas"),
    (NGRAM + "def build_pool(target):\n    return [NgramDrafter()]\n", "must return a non-empty dict"),
    ("def build_pool(target):\n    raise RuntimeError('no weights\\nsecond line')\n",
     "line 2: build_pool(target) failed: RuntimeError: no weights"),
])
def test_load_pool_refuses_a_bad_pool_file_in_one_line(text, match, tmp_path):
    path = tmp_path / "mypool.py"
    path.write_text(text)
    with pytest.raises(StudyError) as err:
        load_pool(target_model("llama"), None, str(path))
    msg = one_line(err)
    assert msg.startswith(f"--pool {path}") and match in msg


def test_eval_reports_a_bad_pool_file_in_one_line(tmp_path, tiny_loader, capsys, clean_user_domains, tickets):
    path = tmp_path / "mypool.py"
    path.write_text("def build_pool(target):\n    return {'x': 42}\n")
    assert main(["eval", "--domains", f"t={tickets}", "--pool", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"specsel eval: error: --pool {path}") and "not a Drafter" in err and "\n" not in err


# --------------------------------------------------------------------------
# 11. OUT/.lock: one process writes a study at a time
# --------------------------------------------------------------------------


def snapshot(out):
    return {name: (out / name).read_bytes() for name in ("queries.jsonl", "config.json")}


def test_a_locked_out_is_refused_in_one_line_and_left_unchanged(copy_of):
    import fcntl

    before = snapshot(copy_of)
    with open(copy_of / ".lock", "a+") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("4242\n")
        held.flush()
        for resume in (True, False):
            with pytest.raises(StudyError, match="being written by another specsel process") as err:
                study(copy_of, resume=resume)
            msg = one_line(err)
            assert f"{copy_of} is being written" in msg and "pid 4242" in msg and str(copy_of / ".lock") in msg
            assert msg.endswith("wait for it or choose another --out")
        assert snapshot(copy_of) == before
        fcntl.flock(held.fileno(), fcntl.LOCK_UN)
    said = []
    study(copy_of, resume=True, warn=said.append)                   # released: it runs
    assert said == [] and snapshot(copy_of)["queries.jsonl"] == before["queries.jsonl"]
    assert (copy_of / ".lock").read_text() == ""                    # no holder named once released


def test_a_second_study_in_the_same_process_is_refused_while_the_first_runs(tmp_path):
    import os

    out = tmp_path / "out"
    seen = []

    def second(spec, bsz, b):
        if not seen:
            with pytest.raises(StudyError, match=f"pid {os.getpid()}, see") as err:
                study(out, resume=True)
            seen.append(one_line(err))

    run_study(target_model("llama"), {"ngram": NgramDrafter()}, items(), config(), out, eos_token_id=1,
              progress=False, log=lambda s: None, plots=False, hook=second)
    assert len(seen) == 1 and (out / "summary.csv").exists()


def test_the_lock_is_released_when_the_study_fails(tmp_path):
    out = tmp_path / "out"

    def interrupt(spec, bsz, b):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_study(target_model("llama"), {"ngram": NgramDrafter()}, items(), config(), out, eos_token_id=1,
                  progress=False, log=lambda s: None, plots=False, hook=interrupt)
    study(out, resume=True)                                         # not blocked by the interrupted one
    assert (out / "summary.csv").exists()


def test_a_leftover_lock_file_without_a_holder_does_not_block(copy_of):
    (copy_of / ".lock").write_text("999999\n")                      # left by a killed process: no flock held
    study(copy_of, resume=True)
    assert (copy_of / ".lock").read_text() == ""


# --------------------------------------------------------------------------
# 12. the specsel version and the target's fingerprint: part of the resume identity
# --------------------------------------------------------------------------


def test_config_records_the_version_and_the_targets_fingerprint(finished):
    import specsel
    from specsel.study.plan import target_fingerprint

    config = json.loads((finished / "config.json").read_text())
    assert config["specsel_version"] == specsel.__version__
    llama = target_model("llama")
    assert config["target_fingerprint"] == target_fingerprint(llama) and len(config["target_fingerprint"]) == 16
    assert target_fingerprint(copy.deepcopy(llama)) == target_fingerprint(llama)
    assert target_fingerprint(copy.deepcopy(llama).to(torch.bfloat16)) == target_fingerprint(llama)
    assert target_fingerprint(target_model("qwen2")) != target_fingerprint(llama)
    assert target_fingerprint(object()) is None


def test_resume_refuses_another_specsel_version(copy_of, monkeypatch):
    import specsel.study.plan

    before = snapshot(copy_of)
    monkeypatch.setattr(specsel.study.plan, "specsel_version", lambda: "9.9.9")
    with pytest.raises(StudyError, match="specsel version") as err:
        study(copy_of, resume=True)
    msg = one_line(err)
    assert f"{specsel.__version__} -> 9.9.9" in msg and "another --out" in msg
    assert snapshot(copy_of) == before


def test_resume_refuses_another_target(copy_of):
    from specsel.study.plan import target_fingerprint

    from conftest import noisy_copy

    other = noisy_copy(target_model("llama"))
    with pytest.raises(StudyError, match="target model") as err:
        study(copy_of, target=other, resume=True)
    msg = one_line(err)
    assert f"{target_fingerprint(target_model('llama'))} -> {target_fingerprint(other)}" in msg
    assert "--target" in msg and "another --out" in msg


def test_an_old_config_without_version_or_fingerprint_resumes_unchecked(copy_of, monkeypatch):
    import specsel.study.plan

    from conftest import noisy_copy

    def forget(config):
        del config["specsel_version"], config["target_fingerprint"]
    edit_config(copy_of, forget)
    monkeypatch.setattr(specsel.study.plan, "specsel_version", lambda: "9.9.9")
    study(copy_of, target=noisy_copy(target_model("llama")), resume=True)       # unknown then: not checked
    config = json.loads((copy_of / "config.json").read_text())
    assert config["specsel_version"] == "9.9.9" and len(config["target_fingerprint"]) == 16   # recorded from now on


def test_pool_help_says_the_file_is_executed():
    import argparse

    from specsel.study.cli import add_eval_arguments

    ap = argparse.ArgumentParser()
    add_eval_arguments(ap)
    pool = next(a for a in ap._actions if "--pool" in a.option_strings)
    assert "(the file is executed as Python: only pass files you trust)" in pool.help
