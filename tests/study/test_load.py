"""The load study: load points and their arrivals, the tuned baselines, the decoder, the sweep through
the executor, its numbers and the targets' verdicts (tiny models: no timing claims here)."""
from __future__ import annotations

import json

import pytest

from drafters import ModelDrafter, NgramDrafter
from evaluators.load_report import format_load_table, verdicts, write_load_report
from evaluators.load_summary import latencies, speculation, summarize_load
from specsel import Arm, SpecEngine
from specsel.core.drafting import draft_calls
from specsel.learners.load_rules import BatchRule, GammaTable
from specsel.study import RunSpec, StudyItem
from specsel.study.load_plan import Baselines, LoadPoint, choose_baselines, load_points, point_runs
from specsel.study.load_run import LoadConfig, LoadDecoder, chunk_size, evaluate, tune
from specsel.study.policies import PolicyFactory
from specsel.testing import random_prompts

from conftest import drafter_models, hf_greedy, target_model


def test_closed_loops_arrive_at_once_and_open_loops_are_seeded_poisson():
    c4, r2 = load_points([4], [2.0], max_batch=8)
    assert (c4.name, c4.cap, r2.name, r2.cap) == ("c4", 4, "r2", 8)
    assert c4.arrivals(5, seed=1) == [0.0] * 5
    times = r2.arrivals(400, seed=1)
    assert times[0] == 0.0 and times == sorted(times) and times == r2.arrivals(400, seed=1)
    assert times != r2.arrivals(400, seed=2)
    assert 0.4 < times[-1] / 399 < 0.6                          # mean gap 1/rate


def test_the_rule_and_the_table_are_chosen_from_the_tuning_sweep():
    speedups = {"eagle@2": {1: 1.4, 2: 1.2, 4: 1.05, 8: 0.9}, "eagle@4": {1: 1.5, 2: 1.1, 4: 0.9, 8: 0.7},
                "ngram@2": {1: 1.1, 2: 1.05, 4: 1.02, 8: 1.01}}
    b = choose_baselines(speedups)
    assert (b.rule_arm, b.rule_rows) == ("eagle@2", 4)          # pays up to 4 requests running
    assert (b.table_drafter, b.table) == ("eagle", {1: 4, 2: 2, 4: 2, 8: 0})
    assert Baselines.from_dict(json.loads(json.dumps(b.to_dict()))) == b
    with pytest.raises(ValueError, match="no fixed arm"):
        choose_baselines({})


def test_load_rules_look_at_the_rows_running():
    rule = BatchRule(Arm("eagle", 2), max_rows=2)
    assert rule.select([0, 1]) == [Arm("eagle", 2)] * 2 and rule.select([0, 1, 2]) == [Arm.autoregressive()] * 3
    table = GammaTable("eagle", {1: 4, 4: 2, 8: 0})
    assert [table.gamma(n) for n in (1, 3, 4, 7, 8, 20)] == [4, 4, 2, 2, 0, 0]
    assert table.select([5, 6, 7, 8, 9, 10, 11, 12]) == [Arm.autoregressive()] * 8
    for bad in (lambda: BatchRule(Arm.autoregressive(), 2), lambda: GammaTable("e", {0: 2}),
                lambda: GammaTable("e", {1: 99})):
        with pytest.raises(ValueError):
            bad()


def test_every_load_point_runs_the_same_policies():
    b = Baselines("ngram@2", 2, "ngram", {1: 2, 4: 0})
    runs = point_runs(LoadPoint(concurrency=4), ["ngram", "model"], [1, 2], ["ngram@2", "model@1"], b,
                      ["hedgespec", "ucbspec"])
    assert [r.name for r in runs] == ["c4/autoregressive", "c4/fixed/ngram@2", "c4/fixed/model@1",
                                      "c4/joint/dynamic_gamma", "c4/joint/rule", "c4/joint/table", "c4/joint/hedgespec",
                                      "c4/joint/ucbspec"]
    assert runs[6].kind == "factored" and runs[6].feedback == "full" and runs[7].arms[-1] == "autoregressive"


@pytest.fixture(scope="module")
def setup():
    target = target_model("llama")
    pool = {"ngram": NgramDrafter(), "model": ModelDrafter(drafter_models("llama")["noisy"])}
    engine = SpecEngine(target, pool, eos_token_id=1)
    prompts = [p + p[:4] for p in random_prompts(10, min_len=3, max_len=9, seed=41)]
    items = [StudyItem(f"q{i}", "a" if i % 2 else "b", p) for i, p in enumerate(prompts)]
    return engine, items


def config(points, baselines=None):
    return LoadConfig(points, ["ngram", "model"], [1, 2], ["ngram@2", "model@1"], ["hedgespec"], chunk=2, repeats=2,
                      max_new_tokens=10, baselines=baselines)


def decoder(engine):
    return LoadDecoder(engine, PolicyFactory(list(engine.drafters), draft_calls(engine.drafters)), 10)


def test_a_static_run_decodes_its_chunk_in_batches_one_after_another(setup):
    engine, items = setup
    d = decoder(engine)
    d.point = LoadPoint(concurrency=2)
    prompts = [it.prompt for it in items[:5]]
    static = d.decode(RunSpec("c2/static/ngram@2", "fixed", arm="ngram@2", options=(("static", 2),)),
                      Arm("ngram", 2), prompts, 0)
    assert static.tokens == [hf_greedy(engine.target, p, 10) for p in prompts]
    assert max(r.batch for r in static.records) == 2 and {r.row for r in static.records} == set(range(5))
    assert [t.admitted_s for t in static.requests][::2] == sorted(t.admitted_s for t in static.requests)[::2]
    assert static.requests[4].admitted_s >= static.requests[1].finish_s       # the third batch waits for the second


def test_a_sweep_tunes_decodes_every_point_resumes_and_reports(setup, tmp_path):
    engine, items = setup
    points = load_points([1, 4], [50.0], max_batch=3)
    cfg = config(points)
    cfg.baselines = tune(items[:4], tmp_path, decoder(engine), cfg, progress=False)
    assert (tmp_path / "tuning" / "baselines.json").is_file() and cfg.baselines.rule_arm in cfg.fixed
    store = evaluate(items, tmp_path, decoder(engine), cfg, progress=False)
    chunks = {p.name: chunk_size(cfg, p) for p in points}
    assert chunks == {"c1": 4, "c4": 16, "r50": 12}
    summary = summarize_load(store.lines, [p.name for p in points], chunks, cfg.repeats)
    assert summary["lossless"]["lossless"] is True
    assert {r["policy"] for r in summary["rows"] if r["point"] == "c4"} >= {
        "autoregressive", "fixed/ngram@2", "joint/rule", "joint/table", "joint/dynamic_gamma", "joint/hedgespec",
        f"static/{summary['continuous_over_static_c4']['arm']}"}
    assert set(summary["hedge_over_ar"]) == {"1", "4", "r50"}
    hedge = next(r for r in summary["rows"] if r["point"] == "c4" and r["policy"] == "joint/hedgespec")
    assert hedge["ttft_ms"]["p50"] is not None and hedge["num_draft_tokens"] >= hedge["num_accepted_tokens"] >= 0
    assert set(hedge["counterfactual_acceptance"]) == {"ngram", "model"}
    assert summary["hedge_over_best_single_static_geomean"]["policy"]
    states = {v["met"] for v in verdicts(summary)}
    assert states <= {True, False, None}
    text = write_load_report(summary, tmp_path / "report", plots=True)
    assert "x autoregressive" in text and (tmp_path / "report" / "throughput_vs_concurrency.png").is_file()
    assert (tmp_path / "report" / "tpot_vs_throughput.png").is_file()
    before = (tmp_path / "queries.jsonl").read_text()
    evaluate(items, tmp_path, decoder(engine), cfg, progress=False)      # resume: nothing left
    assert (tmp_path / "queries.jsonl").read_text() == before


def test_latencies_and_speculation_counters_from_lines():
    line = {"tokens": [5, 6, 7, 8], "request": {"arrival_s": 0.0, "admitted_s": 0.1, "first_token_s": 0.5,
                                                  "finish_s": 1.1},
            "records": [{"time_s": 0.5, "drafted": 2, "accepted": 1, "committed": 2,
                         "position_acceptance": {"a": [1, 0]}},
                        {"time_s": 0.8, "drafted": 0, "accepted": 0, "committed": 1,
                         "position_acceptance": {"a": [1]}},
                        {"time_s": 1.1, "drafted": 1, "accepted": 1, "committed": 1}]}
    lat = latencies([line])
    assert lat["ttft_ms"]["p50"] == pytest.approx(500) and lat["e2el_ms"]["p50"] == pytest.approx(1100)
    assert lat["tpot_ms"]["p50"] == pytest.approx(200) and lat["itl_ms"]["p50"] == pytest.approx(300)
    closed = latencies([line], closed=True)          # a closed loop's client sends when a slot frees
    assert closed["ttft_ms"]["p50"] == pytest.approx(400) and closed["e2el_ms"]["p50"] == pytest.approx(1000)
    spec = speculation([line])
    assert (spec["num_drafts"], spec["num_draft_tokens"], spec["num_accepted_tokens"]) == (2, 3, 2)
    assert spec["acceptance_per_position"] == [1.0, 0.0]
    assert spec["counterfactual_acceptance"]["a"] == pytest.approx(2 / 3)
    assert "x autoregressive" in format_load_table({"rows": [], "lossless": None})
