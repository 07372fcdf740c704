"""The command line beyond its refusals (those are rows of tests/test_bad_inputs.py): good numbers
reach the model; Ctrl-C is one line (exit 130); a torn last line of a records file is ignored;
replays that are estimates are said so; damaged target folders are refused by load_target. No
model is loaded here but tiny random ones."""
import json
import os

import pytest

import specsel.modeling.target
from evaluators.records import append_records, read_records
from specsel.cli import main
from specsel.core.arms import MAX_GAMMA
from specsel.modeling.target import TargetError, load_target
from specsel.testing import tiny_model


def one_line(capsys) -> str:
    """stderr of the last command: one line starting with `specsel`, no traceback."""
    err = capsys.readouterr().err.strip()
    assert err.startswith("specsel") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture
def no_model(monkeypatch):
    """Loading the target fails the test: every check must come before it."""
    def load(*args, **kwargs):
        raise AssertionError("model loaded")
    monkeypatch.setattr(specsel.modeling.target, "load_target", load)


# ----------------------------------------------------------------------------- generate: checked before the load


def test_generate_with_good_numbers_reaches_the_model(no_model):
    with pytest.raises(AssertionError, match="model loaded"):
        main(["generate", "--prompt", "hi", "--gamma", str(MAX_GAMMA), "--temperature", "0.7", "--top-p", "0.9",
              "--seed", "0", "--threads", "1", "--max-new-tokens", "1"])


# ----------------------------------------------------------------------------- Ctrl-C


def interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_ctrl_c_in_generate_is_one_line_and_status_130(monkeypatch, capsys):
    monkeypatch.setattr(specsel.modeling.target, "load_target", interrupt)
    assert main(["generate", "--prompt", "hi"]) == 130
    assert one_line(capsys) == "specsel generate: interrupted"


def test_ctrl_c_in_replay_is_one_line_and_status_130(tmp_path, monkeypatch, capsys):
    import specsel.cli.replay

    study = write_study(tmp_path / "study", {"ngram": True, "eagle": False})
    monkeypatch.setattr(specsel.cli.replay, "replay_rows", interrupt)
    assert main(["replay", "--records", str(study / "queries.jsonl")]) == 130
    assert one_line(capsys) == "specsel replay: interrupted"


# ----------------------------------------------------------------------------- records files


def test_a_torn_last_line_is_still_ignored(tmp_path):
    path = tmp_path / "r.jsonl"
    append_records(path, [{"row": 0, "round": 0, "committed": 2}], query="q0")
    with path.open("a") as f:
        f.write('{"row": 0, "round": 1, "comm')                 # killed mid-line
    assert read_records(path) == [{"row": 0, "round": 0, "committed": 2, "query": "q0"}]
    path.write_text('{"row": 0}\n{"row": 1, "comm\n')            # a complete (newline-ended) line that is bad
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        read_records(path)


# ----------------------------------------------------------------------------- replay: exact or estimated


def write_study(out, replay_exact: dict | None, config_exact: dict | None = None, queries: int = 3):
    """A study's queries.jsonl by hand: one full-information run of `queries` greedy queries with an
    n-gram and an EAGLE drafter; its lines carry `replay_exact` (None: no field); config.json too when
    `config_exact` is given."""
    out.mkdir(parents=True)
    lines = []
    for i in range(queries):
        recs = [{"row": 0, "round": r, "drafter": "eagle", "gamma": 2, "drafted": 2, "accepted": 1, "committed": 2,
                 "draft_s": 0.0, "verify_s": 0.01, "batch": 1,
                 "position_acceptance": {"ngram": [1, 0], "eagle": [1, int(r + i) % 2]}} for r in range(4)]
        lines.append({"run": "fullinfo/drafter/hedgespec", "bsz": 1, "batch": i, "batch_qids": [f"q{i}"], "index": i,
                      "qid": f"q{i}", "domain": "d", "tokens": [0] * 8, "records": recs,
                      **({} if replay_exact is None else {"replay_exact": replay_exact})})
    (out / "queries.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines))
    if config_exact is not None:
        (out / "config.json").write_text(json.dumps({"seed": 0, "replay_exact": config_exact}))
    return out


def replay_table(capsys, path, *flags) -> tuple[list[str], str]:
    """(the table's row lines, the footnote) of `specsel replay`."""
    assert main(["replay", "--records", str(path), "--learners", "hedgespec,ucbspec", *flags]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("replay of ") and out[1].split()[-1] == "replay" and set(out[2]) == {"-"}
    return out[3:-1], out[-1]


def test_replay_of_an_eagle_drafter_is_estimated_in_every_row(tmp_path, capsys):
    study = write_study(tmp_path / "s", {"ngram": True, "eagle": False})
    rows, note = replay_table(capsys, study / "queries.jsonl")
    assert len(rows) == 4 and all(r.split()[-1] == "estimated" for r in rows)
    assert "estimated: replays of eagle are not exact" in note and "exact replay" not in note
    rows, note = replay_table(capsys, study / "queries.jsonl", "--drafters", "ngram")   # the exact drafter alone
    assert all(r.split()[-1] == "exact" for r in rows) and "exact replay (greedy records)" in note


def test_replay_follows_the_studys_config_like_the_study_does(tmp_path, capsys):
    from specsel.replay.fullinfo import FullInfo

    # the lines vouch for eagle, the study's config.json does not: the study's rule (config wins) decides
    study = write_study(tmp_path / "s", {"ngram": True, "eagle": True}, config_exact={"ngram": True, "eagle": False})
    config = json.loads((study / "config.json").read_text())
    lines = read_records(study / "queries.jsonl")
    assert not FullInfo(lines, ["ngram", "eagle"], 0, config["replay_exact"]).exact_for(["eagle@2"])   # the study
    rows, note = replay_table(capsys, study / "queries.jsonl")
    assert all(r.split()[-1] == "estimated" for r in rows) and "replays of eagle are not exact" in note
    # an older study: the lines carry nothing, config.json says
    study = write_study(tmp_path / "old", None, config_exact={"ngram": True, "eagle": False})
    rows, note = replay_table(capsys, study / "queries.jsonl")
    assert all(r.split()[-1] == "estimated" for r in rows)
    rows, note = replay_table(capsys, study / "queries.jsonl", "--drafters", "ngram")
    assert all(r.split()[-1] == "exact" for r in rows)
    # records nobody vouches for are estimates
    study = write_study(tmp_path / "bare", None)
    rows, note = replay_table(capsys, study / "queries.jsonl", "--drafters", "ngram")
    assert all(r.split()[-1] == "estimated" for r in rows)


def test_round_records_of_an_eagle_drafter_are_estimated(tmp_path, capsys):
    from evaluators.lines import flat_records

    study = write_study(tmp_path / "s", {"ngram": True, "eagle": False})
    path = tmp_path / "rounds.jsonl"
    append_records(path, flat_records(read_records(study / "queries.jsonl")))
    rows, note = replay_table(capsys, path)
    assert all(r.split()[-1] == "estimated" for r in rows) and "replays of eagle are not exact" in note


# ----------------------------------------------------------------------------- a damaged --target folder


def saved_target(path):
    tiny_model("llama", seed=0).save_pretrained(path)
    return path


def test_truncated_safetensors_is_a_one_line_target_error(tmp_path, capsys):
    folder = saved_target(tmp_path / "m")
    weights = folder / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)
    capsys.readouterr()                                          # save_pretrained's progress bar
    with pytest.raises(TargetError) as info:
        load_target(str(folder), device="cpu")
    msg = str(info.value)
    assert "\n" not in msg and str(folder) in msg and "re-download the model" in msg and "save_pretrained" in msg
    assert main(["generate", "--prompt", "hi", "--target", str(folder)]) == 2
    assert "re-download the model" in one_line(capsys)


@pytest.mark.parametrize("damage, needle", [
    (lambda f: (f / "model.safetensors").write_bytes(b"\x01\x02"), "SafetensorError"),
    (lambda f: (f / "config.json").write_text('{"model_type": "llama", '), "config"),
    (lambda f: (f / "model.safetensors").unlink(), "could not load a model"),
])
def test_other_damage_to_a_target_folder(damage, needle, tmp_path):
    folder = saved_target(tmp_path / "m")
    damage(folder)
    with pytest.raises(TargetError) as info:
        load_target(str(folder), device="cpu")
    msg = str(info.value)
    assert "\n" not in msg and str(folder) in msg and needle in msg and "re-download" in msg


def test_weights_missing_a_tensor_are_refused_not_random(tmp_path):
    from safetensors.torch import load_file, save_file

    folder = saved_target(tmp_path / "m")
    weights = load_file(folder / "model.safetensors")
    dropped = next(k for k in sorted(weights) if "layers.0." in k)
    del weights[dropped]
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(TargetError, match="lack 1 tensor") as info:
        load_target(str(folder), device="cpu")
    assert dropped in str(info.value) and "re-download" in str(info.value)
