"""Study summaries and outputs from hand-made records (no models)."""
import csv
import json

import numpy as np
import pytest

from evaluators.columns import EXTRA_COLUMNS, SUMMARY_COLUMNS
from evaluators.lines import complete_lines
from evaluators.lossless import check_lossless
from evaluators.report import format_table, write_report
from evaluators.summary import summarize_study
from specsel.core.arms import Arm
from specsel.core.costs import StepCost
from specsel.replay.fullinfo import FullInfo
from specsel.replay.learners import interleaved_arms, regret_vs_arms


def rec(rnd, drafter, gamma, drafted, accepted, committed, **kw):
    """A round record; kw: verify_s (1.0), draft_s (0.0), acc (position_acceptance), row (0)."""
    return {"row": kw.get("row", 0), "round": rnd, "drafter": drafter, "gamma": gamma, "drafted": drafted,
            "accepted": accepted, "committed": committed, "draft_s": kw.get("draft_s", 0.0),
            "verify_s": kw.get("verify_s", 1.0), "batch": 1, "position_acceptance": kw.get("acc")}


def line(run, qid, index, records, tokens, **kw):
    """A query line; kw: batch (= index), wall (1.0), domain ("a"), bsz (1)."""
    return {"run": run, "bsz": kw.get("bsz", 1), "batch": kw.get("batch", index), "batch_qids": [qid], "index": index,
            "qid": qid, "domain": kw.get("domain", "a"), "tokens": tokens, "batch_wall_s": kw.get("wall", 1.0),
            "batch_new_tokens": len(tokens), "records": records}


def fullinfo_query(qid, index, good, bad, domain):
    """One query of 6 tokens decoded by the full-information run playing good@2 (greedy 0/1 records)."""
    acc = [{"good": good[s:s + 3], "bad": bad[s:s + 3]} for s in (0, 3)]
    recs = [rec(0, "good", 2, 2, 2, 3, acc=acc[0]), rec(1, "good", 2, 2, 2, 3, acc=acc[1])]
    return line("drafter/hedgespec", qid, index, recs, [5] * 6, domain=domain)


def test_arm_names():
    assert Arm.parse("early_exit@4") == Arm("early_exit", 4)
    assert Arm.parse("autoregressive") == Arm.autoregressive()
    with pytest.raises(ValueError, match="DRAFTER@GAMMA"):
        Arm.parse("ngram")
    assert interleaved_arms(["a@1", "a@2", "b@1", "b@2"]) == ["a@1", "b@1", "a@2", "b@2"]


def test_complete_lines_keeps_whole_batches_latest_write_wins():
    a = line("r", "q0", 0, [], [1], batch=0)
    b = line("r", "q1", 1, [], [1], batch=0)
    a["batch_qids"] = b["batch_qids"] = ["q0", "q1"]
    partial = line("r", "q2", 2, [], [1], batch=1)
    partial["batch_qids"] = ["q2", "q3"]
    again = {**a, "tokens": [2]}
    out = complete_lines([a, partial, b, again])
    assert [(l["qid"], l["tokens"]) for l in out] == [("q0", [2]), ("q1", [1])]


def test_lossless_check_finds_a_different_output():
    runs = {("autoregressive", 1): {"q": {"tokens": [1, 2]}}, ("x", 1): {"q": {"tokens": [1, 2]}},
            ("y", 1): {"q": {"tokens": [1, 3]}}, ("autoregressive", 2): {"q": {"tokens": [1, 2]}}}
    out = check_lossless(runs, [1, 2])
    assert out["lossless"] is False and out["checked"] == 3
    assert out["mismatches"] == [{"run": "y", "bsz": 1, "qid": "q"}]
    assert out["by_run"][("x", 1)] and not out["by_run"][("y", 1)]


def test_step_cost_fit():
    recs = [rec(k, "d", 4, w, 0, 1, verify_s=1.0 + 0.25 * w, draft_s=0.4) for k, w in enumerate([0, 1, 2, 4, 4])]
    cost = StepCost.fit([line("r", "q", 0, recs, [1] * 5)])
    assert cost.verify0 == pytest.approx(1.0) and cost.slope == pytest.approx(0.25)
    assert cost.draft_step["d"] == pytest.approx(0.1)            # 0.4 s for 4 steps
    assert cost.fill["d"] == pytest.approx(11 / 20)
    assert cost.relative(None, 0) == 1.0
    assert cost.relative("d", 2) == pytest.approx(1 + 0.25 * 2 * 11 / 20 + 0.2)


def study_lines():
    # q0 favours "good", q1 favours "bad": the oracle beats every single arm
    fi = [fullinfo_query("q0", 0, [1, 1, 1, 1, 1, 1], [0] * 6, "a"),
          fullinfo_query("q1", 1, [0] * 6, [1, 1, 1, 1, 1, 1], "b")]
    ar = [line("autoregressive", q, i, [rec(k, None, 0, 0, 0, 1) for k in range(6)], [5] * 6, wall=2.0,
               domain=d) for i, (q, d) in enumerate([("q0", "a"), ("q1", "b")])]
    fixed = [line("fixed/good@2", "q0", 0, [rec(0, "good", 2, 2, 2, 3), rec(1, "good", 2, 2, 2, 3)], [5] * 6,
                  domain="a"),
             line("fixed/good@2", "q1", 1, [rec(k, "good", 2, 2, 0, 1) for k in range(6)], [5] * 6, wall=3.0,
                  domain="b")]
    return fi + ar + fixed


CONFIG = {"settings": {"drafter": {"arms": ["good@2", "bad@2"]}}, "learners": ["hedgespec"], "bsz": [1],
          "queries": [{"qid": "q0", "domain": "a", "index": 0}, {"qid": "q1", "domain": "b", "index": 1}],
          "fullinfo_run": "drafter/hedgespec", "fixed_candidates": 2, "drafters": ["good", "bad"], "seed": 0,
          "temperature": 0.0, "replay_exact": {"good": True, "bad": True}}


def test_summarize_oracle_best_fixed_regret():
    s = summarize_study(study_lines(), CONFIG)
    get = {(r["domain"], r["learner"]): r for r in s["rows"]}
    # 2 + 6 vs 6 + 2 rounds: first on ties
    assert s["best_fixed"] == {"drafter/bsz1": {"arm": "good@2", "exact": True}}
    oracle, best, hedge = get["mixed", "oracle"], get["mixed", "best_fixed"], get["mixed", "hedgespec"]
    assert oracle["mat"] == pytest.approx(12 / 4) and oracle["regret"] == 0 and oracle["tokens_per_s"] is None
    assert best["mat"] == pytest.approx(12 / 8) and best["regret"] == pytest.approx(2.0)
    assert best["pct_oracle"] == pytest.approx(50.0)
    # tokens/s over the stream; speedup: the median of the per-batch ratios to the baseline (6/1 over
    # 6/2 on q0, 6/3 over 6/2 on q1), with their spread; no machine readings, so nothing is judged unreliable
    assert best["tokens_per_s"] == pytest.approx(12 / 4.0) and best["speedup"] == pytest.approx((2.0 + 2 / 3) / 2)
    assert (best["speedup_min"], best["speedup_max"], best["speedup_n"]) == (pytest.approx(2 / 3), 2.0, 2)
    assert best["unreliable"] is None
    assert hedge["mat"] == pytest.approx(3.0) and hedge["regret"] == 0.0
    assert get["b", "best_fixed"]["regret"] == pytest.approx(4.0)    # per domain
    assert get["a", "autoregressive"]["tokens_per_s"] == pytest.approx(3.0)   # bsz 1: per-domain tokens/s
    assert s["lossless"] == {"lossless": True, "checked": 4, "mismatches": []}
    targets = {t["target"]: t for t in s["targets"]}
    assert targets["hedgespec_mat_over_best_fixed"]["ratio"] == pytest.approx(2.0)
    assert targets["hedgespec_mat_over_oracle"]["met"]


def test_write_report(tmp_path):
    s = summarize_study(study_lines(), CONFIG)
    fi = FullInfo([l for l in study_lines() if l["run"] == "drafter/hedgespec"], ["good", "bad"])
    curve = regret_vs_arms(fi, ["good@2", "bad@2"], ["hedgespec", "round_robin"])
    assert curve["sizes"] == [1, 2] and curve["regret"]["hedgespec"][0] == 0
    text = write_report(s, tmp_path, curve)
    assert "best_fixed" in text and "lossless: true" in text
    with (tmp_path / "summary.csv").open() as f:
        header = next(csv.reader(f))
    assert header == list(SUMMARY_COLUMNS + EXTRA_COLUMNS)
    assert json.loads((tmp_path / "lossless.json").read_text()) == {"lossless": True, "checked": 4, "mismatches": []}
    for name in ("throughput_vs_bsz.png", "mat_per_domain.png", "regret_vs_arms.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_format_table_shows_missing_values_as_dashes():
    row = dict.fromkeys(SUMMARY_COLUMNS + EXTRA_COLUMNS)
    row.update(setting="joint", domain="mixed", bsz=4, learner="oracle", mat=2.5, pct_oracle=100.0, lossless=True)
    text = format_table([row])
    assert text.splitlines()[2].split()[:5] == ["joint", "mixed", "4", "oracle", "-"]
    assert "yes" in text and np.isfinite(2.5)


def test_drafters_without_exact_replay_make_estimates_and_best_fixed_is_measured():
    # "bad" is not replay-exact (like an EAGLE head): live, its chains did better than its scores say
    bad_live = [line("fixed/bad@2", "q0", 0, [rec(k, "bad", 2, 2, 1, 2) for k in range(3)], [5] * 6, domain="a"),
                line("fixed/bad@2", "q1", 1, [rec(k, "bad", 2, 2, 2, 3) for k in range(2)], [5] * 6, domain="b")]
    config = {**CONFIG, "replay_exact": {"good": True, "bad": False}}
    s = summarize_study(study_lines() + bad_live, config)
    assert s["best_fixed"] == {"drafter/bsz1": {"arm": "bad@2", "exact": False}}     # 5 measured rounds < 8
    assert s["fixed_candidates"]["drafter/bsz1"]["good@2"]["rounds"] == 8
    oracle = next(r for r in s["rows"] if r["learner"] == "oracle" and r["domain"] == "mixed")
    assert oracle["exact"] is False and "estimated" in oracle["regret_unit"]


def test_without_replay_exact_anywhere_the_drafters_are_estimates():
    """Records that do not say their drafters replay exactly (written before the field existed,
    or by a writer that did not know) give estimates, not exact claims."""
    config = {k: v for k, v in CONFIG.items() if k != "replay_exact"}
    s = summarize_study(study_lines(), config)
    assert s["best_fixed"]["drafter/bsz1"]["exact"] is False
    oracle = next(r for r in s["rows"] if r["learner"] == "oracle" and r["domain"] == "mixed")
    assert oracle["exact"] is False and oracle["regret_unit"] == "rounds (estimated)"
    # the study writes the field into its full-information lines: then they are enough
    marked = [{**l, "replay_exact": {"good": True, "bad": True}} if l["run"] == "drafter/hedgespec" else l
              for l in study_lines()]
    s = summarize_study(marked, config)
    assert s["best_fixed"] == {"drafter/bsz1": {"arm": "good@2", "exact": True}}


def test_replay_exact_rule():
    from specsel.replay.fullinfo import replay_exact_of
    yes, no = {"replay_exact": {"a": True, "b": False}}, {}
    assert replay_exact_of([yes, yes], ["a", "b", "c"]) == {"a": True, "b": False, "c": False}
    assert replay_exact_of([yes, no], ["a"]) == {"a": False}                 # one item without the field
    assert replay_exact_of([], ["a"]) == {"a": False}
    assert replay_exact_of([no], ["a", "b"], told={"a": True}) == {"a": True, "b": False}   # told wins


def test_sampling_fixed_rounds_equal_the_fixed_learner_replay():
    """FullInfo.fixed_rounds of a sampling record runs no learner, yet draws what simulate() with
    a fixed learner draws (same seed per query), so the study's numbers are unchanged."""
    from specsel.core.seeds import query_seed
    from specsel.learners import make_learner
    from specsel.replay.simulate import simulate

    rng = np.random.default_rng(5)
    lines = []
    for i in range(4):
        n = int(rng.integers(3, 40))
        probs = {d: np.round(rng.random(n), 3).tolist() for d in ("good", "bad")}
        recs = [rec(k, "good", 2, 1, 0, 1, acc={d: [p[k]] for d, p in probs.items()}) for k in range(n)]
        lines.append(line("drafter/hedgespec", f"q{i}", i, recs, [5] * n))
    fi = FullInfo(lines, ["good", "bad"], seed=7)
    assert not fi.greedy
    for q in fi.qids:
        for d in ("good", "bad"):
            for g in (1, 2, 5):
                fixed = make_learner("fixed", 1, reward_range=(1.0, g + 1.0))
                want = len(simulate(fixed, fi.matrices[q], [fi.pair(d, g)], feedback="bandit",
                                    seed=query_seed(7, fi.index[q])))
                assert fi.fixed_rounds(q, d, g) == want


def test_study_learners_are_learners():
    """The study's learner list (written once, in specsel.core.runs) names real learners."""
    from specsel.core.runs import OBJECTIVE, SETTINGS, STUDY_LEARNERS
    from specsel.learners import LEARNERS

    assert all(name in LEARNERS for name in STUDY_LEARNERS)
    assert set(OBJECTIVE) == set(SETTINGS)
