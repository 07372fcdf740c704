"""A prompt router in the study, on tiny random models: `specsel router collect` (the full-information
run alone), `specsel router fit` (texts read again from the study's data), the router rows of
`specsel eval --router` (lossless, replayed exactly from the records), and resume safety."""
import json

import numpy as np
import pytest

from drafters import ModelDrafter, NgramDrafter
from evaluators.lines import index_runs
from evaluators.records import read_records
from specsel.cli import main
from specsel.core.arms import Arm
from specsel.data import load_domain, resolve_domains
from specsel.replay.fullinfo import FullInfo
from specsel.replay.learners import replay_learner
from specsel.router import load_routers
from specsel.study import StudyConfig, StudyError, StudyItem, run_study
from specsel.study.router_fit import fit_router
from specsel.study.routing import load_study_router, study_priors
from specsel.testing import random_prompts

from conftest import drafter_models, target_model

pytestmark = pytest.mark.usefixtures("clean_user_domains")
KINDS = {"code": "def add(a, b):\n    return a + b  # complete {i}", "math": "Solve $x^{i} + 2x = 3$ for x.",
         "med": "A {i}-year-old patient presents with fever. Which drug? A. one B. two C. three"}


def pool():
    return {"noisy": ModelDrafter(drafter_models("llama")["noisy"]), "ngram": NgramDrafter()}


@pytest.fixture(scope="module")
def user_data(tmp_path_factory):
    """A user domain whose prompts are of three kinds, and a study stream over it (tiny-model prompt ids)."""
    path = tmp_path_factory.mktemp("data") / "mixed.jsonl"
    rows = [{"prompt": KINDS[k].format(i=i)} for i in range(4) for k in KINDS]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def stream(path):
    (name,) = resolve_domains(f"mixed={path}@all")
    queries = load_domain(name)
    prompts = [p + p[:5] for p in random_prompts(len(queries), min_len=3, max_len=12, seed=21)]
    return [StudyItem(q.qid, q.domain, p, q.user_text) for q, p in zip(queries, prompts)]


def config(**kw):
    return StudyConfig(**{**dict(gamma=3, gammas=(1, 3), bsz=(2,), max_new_tokens=16, seed=3), **kw})


def study(out, items, cfg, **kw):
    return run_study(target_model("llama"), pool(), items, cfg, out, eos_token_id=1, progress=False,
                     log=lambda s: None, plots=False, **kw)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, user_data):
    """`router collect` (phase 1 only) on the stream, then `router fit` on its records."""
    resolve_domains(f"mixed={user_data}@all")
    base = tmp_path_factory.mktemp("router")
    items = stream(user_data)
    out = study(base / "collect", items, config(learners=("hedgespec",)), fullinfo_only=True,
                data={"data_dir": None, "domains": f"mixed={user_data}@all", "split": "eval", "skip": 0, "limit": None})
    assert out["queries"] == len(items)
    metrics = fit_router([str(base / "collect" / "queries.jsonl")], str(base / "router"), folds=3, log=lambda s: None)
    return base, items, metrics


def test_collect_writes_only_the_full_information_run_and_fit_saves_both_settings(fitted):
    base, items, metrics = fitted
    runs = {l["run"] for l in read_records(base / "collect" / "queries.jsonl")}
    assert runs == {"fullinfo/drafter/hedgespec"}
    assert not (base / "collect" / "summary.csv").exists()
    assert set(metrics) == {"drafter", "joint"}
    assert all(m["n"] == len(items) and 0 <= m["accuracy"] <= 1 and m["routing_regret"] >= 0
               for m in metrics.values())
    models, meta = load_routers(base / "router")
    assert models["drafter"].arms == ["noisy@3", "ngram@3"]
    assert models["joint"].arms[-1] == "autoregressive"
    assert sorted(p.name for p in (base / "router").iterdir()) == ["router.json", "router.safetensors"]


@pytest.fixture(scope="module")
def routed(fitted):
    base, items, _ = fitted
    out = base / "study"
    summary = study(out, items, config(learners=("hedgespec",), router=str(base / "router")))
    return base, items, out, summary


def test_router_rows_are_in_the_table_and_lossless(routed):
    _, _, out, summary = routed
    rows = {(r["setting"], r["learner"]) for r in summary["rows"] if r["domain"] == "mixed"}
    for setting in ("drafter", "joint"):
        assert {(setting, "router"), (setting, "router_hedgespec")} <= rows
    assert summary["lossless"]["lossless"] is True
    names = {t["target"] for t in summary["targets"]}
    assert {"router_mat_over_best_fixed", "router_hedgespec_mat_over_hedgespec",
            "router_hedgespec_mat_over_oracle"} <= names
    config = json.loads((out / "config.json").read_text())
    assert config["learners"] == ["hedgespec", "router", "router_hedgespec"] and len(config["router"]["sha256"]) == 64


def test_router_rows_replay_exactly_from_the_records(routed):
    base, items, out, _ = routed
    config = json.loads((out / "config.json").read_text())
    runs = index_runs(read_records(out / "queries.jsonl"))
    fi = FullInfo(runs[config["fullinfo_run"], 2].values(), config["drafters"], config["seed"],
                  config["replay_exact"])
    table = study_priors(load_study_router(base / "router"), [it.text for it in items], config["settings"],
                         config["drafters"])[("drafter", "drafters")]
    priors = {it.qid: table[i] for i, it in enumerate(items)}
    pairs = [fi.pair(Arm.parse(a).drafter, Arm.parse(a).gamma) for a in config["settings"]["drafter"]["arms"]]
    for learner in ("router", "router_hedgespec"):
        live = {q: len(line["records"]) for q, line in runs[f"drafter/{learner}", 2].items()}
        assert replay_learner(fi, learner, pairs, config["seed"], priors=priors) == live
    first = {q: line["records"][0]["drafter"] for q, line in runs["drafter/router", 2].items()}
    assert first == {it.qid: config["drafters"][int(np.argmax(table[i]))] for i, it in enumerate(items)}


def test_resume_refuses_another_router(routed, tmp_path):
    base, items, out, _ = routed
    tampered = tmp_path / "router"
    tampered.mkdir()
    info = json.loads((base / "router" / "router.json").read_text())
    info["meta"]["note"] = "refitted"
    (tampered / "router.json").write_text(json.dumps(info))
    (tampered / "router.safetensors").write_bytes((base / "router" / "router.safetensors").read_bytes())
    with pytest.raises(StudyError, match="different router"):
        study(out, items, config(learners=("hedgespec",), router=str(tampered)), resume=True)


def cli_error(argv, capsys) -> str:
    """The one-line error of a command line that must fail (exit status 2)."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err
    return err


def test_router_flags_fail_in_one_line_before_the_model_loads(tmp_path, capsys):
    out = ["--out", str(tmp_path / "out")]
    assert "need a router" in cli_error(["eval", "--learners", "hedgespec,router", *out], capsys)
    assert "no router.json" in cli_error(["eval", "--router", str(tmp_path / "none"), *out], capsys)
    assert "default pool" in cli_error(["eval", "--router", "default", "--pool", "x.py", *out], capsys)
    assert "--folds" in cli_error(["router", "fit", "--records", "x", "--out", "y", "--folds", "1"], capsys)
    assert "no such file" in cli_error(["router", "fit", "--records", str(tmp_path / "q.jsonl"),
                                        "--out", str(tmp_path / "r")], capsys)


def test_tune_router_replays_out_of_fold_priors(fitted, capsys):
    from conftest import load_recipe
    base, items, _ = fitted
    assert load_recipe("tune_router").main(["--records", str(base / "collect" / "queries.jsonl"), "--folds", "2",
                                            "--floors", "0.1", "--discounts", "0.5"]) == 0
    out = capsys.readouterr().out
    assert f"{len(items)} queries" in out and "router_hedgespec" in out and "oracle" in out


def test_a_study_without_a_router_resumes_whatever_wrote_it():
    from specsel.study.store import identity
    assert identity({}, "router") == identity({"router": ""}, "router") is None
    assert identity({"router": {"path": "a", "sha256": "x"}}, "router") == "x"


def test_the_shipped_router_loads_for_the_default_pool():
    from drafters.pool import DEFAULT_NAMES, ROUTER_DIR
    models, meta = load_routers(ROUTER_DIR)
    assert models["drafter"].arms == [f"{d}@4" for d in DEFAULT_NAMES]
    assert set(models) == {"drafter", "joint"} and meta["queries"] > 0
    probs = models["drafter"].predict_proba(["Write a Python function that reverses a list."])
    assert probs.shape == (1, len(DEFAULT_NAMES)) and abs(probs.sum() - 1) < 1e-9
