"""The `specsel` command line: subcommands parse, list, replay, and fail with one-line errors."""
import pytest

from conftest import drafter_models, target_model
from drafters import ModelDrafter, NgramDrafter
from drafters.pool import pool_names
from evaluators.records import append_records, read_records
from evaluators.summary import flat_records
from specsel.cli import build_parser, main
from specsel.study import StudyConfig, StudyItem, run_study
from specsel.testing import random_prompts


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli_study")
    prompts = [p + p[:5] for p in random_prompts(4, min_len=3, max_len=12, seed=21)]
    items = [StudyItem(f"d{i % 2}/{i}", f"d{i % 2}", p) for i, p in enumerate(prompts)]
    pool = {"noisy": ModelDrafter(drafter_models("llama")["noisy"]), "ngram": NgramDrafter()}
    cfg = StudyConfig(settings=("drafter",), learners=("hedgespec", "ucbspec"), gamma=3, bsz=(2,),
                      max_new_tokens=16, seed=1)
    run_study(target_model("llama"), pool, items, cfg, out, eos_token_id=1, progress=False, log=lambda s: None,
              plots=False)
    return out


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
    assert "replay of drafter/hedgespec (bsz 2): 4 queries, 4 arms" in out
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
