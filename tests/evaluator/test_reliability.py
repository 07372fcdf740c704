"""Speed figures that cannot lie: per-batch ratios, the machine each batch had, unreliable rows,
targets that are not judged on them, and a best fixed arm never chosen on them."""
from __future__ import annotations

import pytest

from evaluators.reliability import (
    OTHERS_LIMIT,
    SPREAD_LIMIT,
    WAIT_LIMIT,
    disturbance,
    judge,
    others_share,
    repeat_spread,
    wait_share,
)
from evaluators.report import footnotes, format_table
from evaluators.summary import summarize_study
from evaluators.timing import batch_times, paired_ratios, ratio_summary

IDLE = {"wall_s": 1.0, "cpu_s": 1.9, "others_cpu_s": 0.02, "cpus": 2, "threads": 2, "run_s": 1.9, "wait_s": 0.01}
BUSY = {"wall_s": 1.0, "cpu_s": 1.0, "others_cpu_s": 1.0, "cpus": 2, "threads": 2, "run_s": 1.0,
        "wait_s": 0.9}                                                  # a process held one core


def line(run, batch, wall, tokens=8, machine=IDLE, bsz=1, qid=None, records=None):
    qid = qid or f"q{batch}"
    return {"run": run, "bsz": bsz, "batch": batch, "batch_qids": [qid], "index": batch, "qid": qid,
            "domain": "d", "tokens": [5] * tokens, "batch_wall_s": wall, "batch_prefill_s": 0.0,
            "batch_new_tokens": tokens, "batch_machine": machine, "records": records or []}


def test_a_batch_is_disturbed_when_its_threads_waited_or_others_held_the_cpus():
    assert others_share(IDLE) == pytest.approx(0.01) and others_share(BUSY) == pytest.approx(0.5)
    assert others_share(None) is None and others_share({"wall_s": 0, "cpus": 2, "others_cpu_s": 1}) is None
    assert wait_share(BUSY) == pytest.approx(0.9 / 1.9) and wait_share({"wall_s": 1.0}) is None
    assert disturbance(IDLE) is None and disturbance(BUSY) == "its threads waited for a CPU 47% of the time"
    others = {**BUSY, "wait_s": 0.0}
    assert disturbance(others) == "other processes took 50% of the CPUs"
    # a short batch's tick-counted CPU times are too coarse: only its waiting is judged
    assert disturbance({**others, "wall_s": 0.2, "others_cpu_s": 0.2}) is None


def test_ratios_are_taken_batch_by_batch_within_a_repeat():
    lines = [line("a", 0, 1.0), line("b", 0, 2.0), line("a", 1, 4.0), line("b", 1, 2.0),
             line("a#2", 0, 1.0), line("b#2", 0, 1.0)]
    pairs = paired_ratios(batch_times(lines), "a", "b", 1, repeats=2)
    assert sorted((p.batch, p.repeat, p.ratio) for p in pairs) == [(0, 0, 2.0), (0, 1, 1.0), (1, 0, 0.5)]
    assert ratio_summary(pairs) == {"median": 1.0, "min": 0.5, "max": 2.0, "n": 3}
    # several references: the fastest on each batch
    fastest = paired_ratios(batch_times(lines + [line("c", 0, 0.5)]), "a", ["b", "c"], 1)
    assert [p.ratio for p in fastest] == [0.5, 0.5]


def test_a_disturbed_batch_or_an_unsteady_ratio_is_unreliable_with_the_reason():
    times = batch_times([line("a", 0, 1.0), line("b", 0, 1.0, machine=BUSY), line("a", 1, 1.0), line("b", 1, 1.0)])
    assert judge(times, [("a", 1, 0), ("a", 1, 1)]) is None
    reason = judge(times, list(times))
    assert reason == (f"its threads waited for a CPU 47% of the time in batch 0 (1 of 2 batches disturbed; limits: "
                      f"threads waiting {WAIT_LIMIT:.0%}, other processes {OTHERS_LIMIT:.0%} of the CPUs)")
    steady = batch_times([line("a", 0, 1.0), line("b", 0, 1.0), line("a#2", 0, 1.0), line("b#2", 0, 1.1)])
    pairs = paired_ratios(steady, "a", "b", 1, repeats=2)
    assert repeat_spread(pairs) == pytest.approx(0.1) and judge(steady, list(steady), pairs) is None
    shaky = batch_times([line("a", 0, 1.0), line("b", 0, 1.0), line("a#2", 0, 1.0), line("b#2", 0, 2.0)])
    pairs = paired_ratios(shaky, "a", "b", 1, repeats=2)
    assert judge(shaky, list(shaky), pairs) == f"one batch's ratio moved by 100% between repeats (limit " \
                                                f"{SPREAD_LIMIT:.0%})"


def rec(round_, drafter, gamma, drafted, committed, verify_s=0.1, draft_s=0.0, acc=None):
    return {"row": 0, "round": round_, "drafter": drafter, "gamma": gamma, "drafted": drafted, "accepted": drafted,
            "committed": committed, "draft_s": draft_s, "verify_s": verify_s, "batch": 1, "position_acceptance": acc}


def joint_study(busy_fixed: bool):
    """Two queries; the joint setting's two fixed candidates ran live; a.k.a. the main job's shape."""
    acc = {"x": [1.0, 1.0], "y": [1.0, 0.0]}
    lines = []
    for b in (0, 1):
        fi = [rec(k, "x", 1, 1, 2, acc=acc) for k in range(4)]
        lines.append(line("fullinfo/drafter/hedgespec", b, 1.0, records=fi))
        lines.append(line("autoregressive", b, 2.0, records=[rec(k, None, 0, 0, 1) for k in range(8)]))
        for arm, wall in (("x@1", 1.0), ("y@1", 0.5)):
            machine = BUSY if busy_fixed and arm == "y@1" else IDLE
            lines.append(line(f"fixed/{arm}", b, wall, machine=machine, records=[rec(k, arm[0], 1, 1, 2)
                                                                                 for k in range(4)]))
        lines.append(line("joint/hedgespec", b, 0.4, records=[rec(k, "x", 1, 1, 2) for k in range(4)]))
    config = {"settings": {"joint": {"arms": ["x@1", "y@1", "autoregressive"]}}, "learners": ["hedgespec"],
              "bsz": [1], "queries": [{"qid": f"q{b}", "domain": "d", "index": b} for b in (0, 1)],
              "fullinfo_run": "fullinfo/drafter/hedgespec", "fixed_candidates": 2, "drafters": ["x", "y"],
              "seed": 0, "temperature": 0.0, "replay_exact": {"x": True, "y": True}}
    return lines, config


def test_the_study_marks_unreliable_rows_and_does_not_judge_targets_on_them():
    summary = summarize_study(*joint_study(busy_fixed=False))
    rows = {r["learner"]: r for r in summary["rows"] if r["domain"] == "d"}
    assert summary["best_fixed"]["joint/bsz1"]["arm"] == "y@1"          # measured faster, batch by batch
    assert rows["best_fixed"]["speedup"] == pytest.approx(4.0) and rows["best_fixed"]["unreliable"] is None
    target = next(t for t in summary["targets"] if t["target"] == "hedgespec_tps_over_best_fixed")
    assert target["ratio"] == pytest.approx(1.25) and target["met"] is True

    summary = summarize_study(*joint_study(busy_fixed=True))
    rows = {r["learner"]: r for r in summary["rows"] if r["domain"] == "d"}
    best = summary["best_fixed"]["joint/bsz1"]
    # the timings are not trusted: the best fixed arm comes from the full-information estimate, with the reason
    assert best["arm"] == "x@1" and "its threads waited for a CPU 47%" in best["chosen_by_estimate"]
    assert rows["autoregressive"]["unreliable"] is None
    text = format_table(summary["rows"]) + "\n" + "\n".join(footnotes(summary))
    assert "best by the full-information estimate" in text
    busy = summarize_study(*_with_busy_hedge(joint_study(busy_fixed=False)))
    target = next(t for t in busy["targets"] if t["target"] == "hedgespec_tps_over_best_fixed")
    assert target["met"] is None and target["not_judged"].startswith("timing unreliable: its threads waited")
    hedge = next(r for r in busy["rows"] if r["learner"] == "hedgespec" and r["domain"] == "d")
    assert hedge["unreliable"] and "UNRELIABLE" in format_table([hedge])
    notes = "\n".join(footnotes(busy))
    assert "not judged (timing unreliable" in notes and ": met" not in notes and "NOT met" not in notes
    assert busy["machine"]["disturbed_batches"] == 2


def _with_busy_hedge(study):
    lines, config = study
    for l in lines:
        if l["run"] == "joint/hedgespec":
            l["batch_machine"] = BUSY
    return lines, config
