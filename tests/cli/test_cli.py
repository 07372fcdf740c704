"""The `specsel` command line: subcommands parse, list, replay, and fail with one-line errors."""
import pytest

from drafters import ModelDrafter, NgramDrafter
from drafters.pool import pool_names
from evaluators.lines import flat_records
from evaluators.records import append_records, read_records
from specsel.cli import build_parser, main
from specsel.core.drafting import Capabilities
from specsel.study import StudyConfig, StudyItem, run_study
from specsel.testing import random_prompts

from conftest import drafter_models, target_model


def small_study(out, second_drafter: tuple, learners: tuple):
    """A drafter-setting study of 4 queries with the noisy model drafter and `second_drafter` (name, drafter)."""
    prompts = [p + p[:5] for p in random_prompts(4, min_len=3, max_len=12, seed=21)]
    items = [StudyItem(f"d{i % 2}/{i}", f"d{i % 2}", p) for i, p in enumerate(prompts)]
    pool = {"noisy": ModelDrafter(drafter_models("llama")["noisy"]), second_drafter[0]: second_drafter[1]}
    cfg = StudyConfig(settings=("drafter",), learners=learners, gamma=3, bsz=(2,), max_new_tokens=16, seed=1)
    run_study(target_model("llama"), pool, items, cfg, out, eos_token_id=1, progress=False, log=lambda s: None,
              plots=False)
    return out


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    return small_study(tmp_path_factory.mktemp("cli_study"), ("ngram", NgramDrafter()), ("hedgespec", "ucbspec"))


def one_line_error(capsys):
    err = capsys.readouterr().err.strip()
    assert err.startswith("specsel") and "\n" not in err
    return err


def test_drafters_lists_the_pool(capsys):
    assert main(["drafters"]) == 0
    out = capsys.readouterr().out
    for name in pool_names():
        assert name in out


def test_every_subcommand_parses():
    p = build_parser()
    assert p.parse_args(["eval", "--limit", "2", "--bsz", "1,4"]).bsz == "1,4"
    assert p.parse_args(["replay", "--records", "x.jsonl"]).records == "x.jsonl"
    assert p.parse_args(["generate", "--prompt", "hi", "--drafter", "early_exit_8"]).drafter == "early_exit_8"
    assert p.parse_args(["drafters"]).command == "drafters"


def test_replay_on_eval_output(study_dir, capsys):
    assert main(["replay", "--records", str(study_dir / "queries.jsonl"), "--gammas", "1,3"]) == 0
    out = capsys.readouterr().out
    assert "replay of fullinfo/drafter/hedgespec (bsz 2): 4 queries, 4 arms" in out
    for learner in ("best_fixed", "oracle", "ucbspec", "exp3spec", "hedgespec", "round_robin"):
        assert learner in out


def test_replay_on_round_records_matches_the_live_run(study_dir, tmp_path, capsys):
    lines = [l for l in read_records(study_dir / "queries.jsonl") if l["run"] == "drafter/hedgespec"]
    path = tmp_path / "records.jsonl"
    append_records(path, flat_records(lines))
    assert main(["replay", "--records", str(path), "--learners", "hedgespec", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    live_rounds = sum(len(l["records"]) for l in lines)
    row = next(l for l in out.splitlines() if l.startswith("replay") and " hedgespec " in l)
    tokens = sum(len(l["tokens"]) for l in lines)
    assert f"{tokens / live_rounds:.3f}" in row            # replay == live run (greedy, same seeds)


@pytest.mark.parametrize("argv, match", [
    (["replay", "--records", "/nonexistent/q.jsonl"], "no such file"),
    (["eval", "--learners", "hedgespec,thompson"], "unknown learner"),
    (["eval", "--gammas", "1,x"], "comma-separated integers"),
    (["eval", "--drafters", "ngram,eagle_nope"], "unknown drafter"),
    (["eval", "--settings", "both"], "unknown setting"),
    (["generate", "--prompt", "hi", "--drafter", "nope"], "unknown drafter"),
])
def test_errors_are_one_line(argv, match, capsys):
    assert main(argv) == 2
    assert match in one_line_error(capsys)


def test_replay_needs_full_information(study_dir, tmp_path, capsys):
    lines = [l for l in read_records(study_dir / "queries.jsonl") if l["run"] == "autoregressive"]
    path = tmp_path / "ar.jsonl"
    append_records(path, flat_records(lines))
    assert main(["replay", "--records", str(path)]) == 2
    assert "feedback='full'" in one_line_error(capsys)
    assert main(["replay", "--records", str(study_dir / "queries.jsonl"), "--run", "drafter/ucbspec"]) == 2
    assert "no full-information run named drafter/ucbspec" in one_line_error(capsys)


class InexactNgram(NgramDrafter):
    """An n-gram drafter that declares its replays inexact, as an EAGLE head or a LoRA expert does."""
    capabilities = Capabilities(deterministic=True, replay_exact=False)


@pytest.fixture(scope="module")
def inexact_study_dir(tmp_path_factory):
    return small_study(tmp_path_factory.mktemp("cli_inexact"), ("lookup", InexactNgram()), ("hedgespec",))


def test_replay_of_a_drafter_without_exact_replay_is_labelled_estimated(inexact_study_dir, study_dir, capsys):
    lines = read_records(inexact_study_dir / "queries.jsonl")
    source = [l for l in lines if l["run"] == "fullinfo/drafter/hedgespec"]
    assert all(l["replay_exact"] == {"noisy": True, "lookup": False} for l in source)   # in the records file
    assert main(["replay", "--records", str(inexact_study_dir / "queries.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "exact replay" not in out and "estimated: replays of lookup are not exact" in out
    assert main(["replay", "--records", str(inexact_study_dir / "queries.jsonl"), "--drafters", "noisy"]) == 0
    assert "exact replay (greedy records)" in capsys.readouterr().out      # the exact drafter alone
    assert main(["replay", "--records", str(study_dir / "queries.jsonl")]) == 0
    assert "exact replay (greedy records)" in capsys.readouterr().out


def test_replay_rows_say_estimated(inexact_study_dir):
    from specsel.replay.fullinfo import FullInfo
    from specsel.replay.learners import replay_rows

    lines = [l for l in read_records(inexact_study_dir / "queries.jsonl")
             if l["run"] == "fullinfo/drafter/hedgespec"]
    rows = replay_rows(FullInfo(lines, ["noisy", "lookup"], 1), ["noisy@3", "lookup@3"], ["hedgespec"], 1)
    assert all(r["exact"] is False and r["regret_unit"] == "rounds (estimated)" for r in rows)
    rows = replay_rows(FullInfo(lines, ["noisy", "lookup"], 1), ["noisy@3"], ["hedgespec"], 1)
    assert all(r["exact"] is True and r["regret_unit"] == "rounds" for r in rows)


def test_round_records_carry_replay_exactness(study_dir, tmp_path, capsys):
    lines = [{k: v for k, v in l.items() if k != "replay_exact"}
             for l in read_records(study_dir / "queries.jsonl") if l["run"] == "drafter/hedgespec"]
    marked, unmarked = tmp_path / "marked" / "records.jsonl", tmp_path / "unmarked" / "records.jsonl"
    append_records(marked, flat_records(lines), replay_exact={"noisy": True, "ngram": False})
    append_records(unmarked, flat_records(lines))
    assert all(r["replay_exact"] == {"noisy": True, "ngram": False} for r in read_records(marked))
    for path, exact in ((marked, False), (unmarked, False)):     # no field: not known exact
        assert main(["replay", "--records", str(path), "--seed", "1"]) == 0
        assert ("exact replay" in capsys.readouterr().out) is exact
    append_records(tmp_path / "exact.jsonl", flat_records(lines), replay_exact={"noisy": True, "ngram": True})
    assert main(["replay", "--records", str(tmp_path / "exact.jsonl"), "--seed", "1"]) == 0
    assert "exact replay (greedy records)" in capsys.readouterr().out


def test_eval_flags_map_to_the_study_config():
    """Every StudyConfig field has one eval flag, and the flags' defaults are the config's defaults."""
    from dataclasses import fields

    from specsel.modeling.target import EMBEDDED_DEFAULT
    from specsel.study import StudyConfig, config_from_args

    args = build_parser().parse_args(["eval"])
    assert config_from_args(args) == StudyConfig(target=EMBEDDED_DEFAULT, settings=["drafter", "joint"],
                                                 learners=list(StudyConfig.learners), gammas=[1, 2, 4], bsz=[4])
    assert all(hasattr(args, f.name) for f in fields(StudyConfig))
    args = build_parser().parse_args(["eval", "--gamma", "2", "--gammas", "1,3", "--bsz", "1,2", "--top-p", "0.9",
                                      "--settings", "joint", "--score-every", "1"])
    cfg = config_from_args(args)
    assert (cfg.gamma, cfg.gammas, cfg.bsz, cfg.top_p, cfg.settings, cfg.score_every) == (2, [1, 3], [1, 2], 0.9,
                                                                                          ["joint"], 1)


def _hedge_row(out):
    return next(l for l in out.splitlines() if l.startswith("replay") and " hedgespec " in l)


def test_replay_hears_rounds_as_the_study_did(study_dir, tmp_path, capsys):
    """A study run with --score-every k (greedy) is replayed with the same delay, unless
    --score-every says otherwise; a records file without a study config replays without delay."""
    import json
    import shutil
    for name in ("queries.jsonl", "config.json"):
        shutil.copy(study_dir / name, tmp_path / name)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["score_every"] == 1                            # the study's default
    config["score_every"] = 4
    (tmp_path / "config.json").write_text(json.dumps(config))
    records = str(tmp_path / "queries.jsonl")
    assert main(["replay", "--records", records, "--learners", "hedgespec"]) == 0
    told = capsys.readouterr().out
    assert "full information heard 4 rounds at a time" in told
    assert main(["replay", "--records", records, "--learners", "hedgespec", "--score-every", "1"]) == 0
    now = capsys.readouterr().out
    assert "heard" not in now
    assert _hedge_row(told) != _hedge_row(now)                  # the delay changes what HedgeSpec plays
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(study_dir / "queries.jsonl", bare / "queries.jsonl")
    assert main(["replay", "--records", str(bare / "queries.jsonl"), "--learners", "hedgespec", "--seed", "1",
                 "--score-every", "4"]) == 0
    assert _hedge_row(capsys.readouterr().out) == _hedge_row(told)


def test_study_score_every_only_for_greedy_studies():
    from specsel.replay.learners import study_score_every
    assert study_score_every(None) == 1 and study_score_every({}) == 1
    assert study_score_every({"score_every": 3, "temperature": 0.0}) == 3
    assert study_score_every({"score_every": 3, "temperature": 0.7}) == 1      # sampling never defers scoring
    assert study_score_every({"score_every": "3", "temperature": 0.0}) == 1
