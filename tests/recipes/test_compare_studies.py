"""recipes/compare_studies.py: the identity check of two study folders finds every kind of change."""
import json
from pathlib import Path

from conftest import load_recipe


def load():
    return load_recipe("compare_studies")


def write_study(folder: Path, tokens=(5, 6, 7), committed=2, mat=1.5, best="ngram@4"):
    folder.mkdir()
    rec = {"round": 0, "row": 0, "drafter": "ngram", "gamma": 4, "drafted": 2, "accepted": 1,
           "committed": committed, "draft_s": 0.1, "verify_s": 0.2, "batch": 1, "position_acceptance": None}
    line = {"run": "drafter/hedgespec", "bsz": 1, "batch": 0, "qid": "q0", "tokens": list(tokens), "records": [rec]}
    (folder / "queries.jsonl").write_text(json.dumps(line) + "\n")
    row = {"setting": "drafter", "domain": "mixed", "bsz": 1, "learner": "hedgespec", "mat": mat, "regret": 0.5,
           "pct_oracle": 90.0, "tokens_per_s": 12.0}
    (folder / "summary.json").write_text(json.dumps({"rows": [row], "best_fixed": {"drafter/bsz1": {"arm": best}}}))


def test_identical_studies_pass_and_timings_are_ignored(tmp_path, capsys):
    mod = load()
    write_study(tmp_path / "a")
    write_study(tmp_path / "b")
    data = json.loads((tmp_path / "b" / "queries.jsonl").read_text())
    data["records"][0]["verify_s"] = 9.9             # timing: not compared
    (tmp_path / "b" / "queries.jsonl").write_text(json.dumps(data) + "\n")
    assert mod.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert "IDENTICAL" in capsys.readouterr().out


def test_every_kind_of_difference_is_reported(tmp_path):
    mod = load()
    write_study(tmp_path / "a")
    write_study(tmp_path / "tokens", tokens=(5, 6, 8))
    write_study(tmp_path / "rounds", committed=3)
    write_study(tmp_path / "mat", mat=1.6)
    write_study(tmp_path / "best", best="eagle@4")
    for other, what in (("tokens", "tokens differ"), ("rounds", "round records differ"), ("mat", "mat 1.5 -> 1.6"),
                        ("best", "best fixed arms differ")):
        diffs = mod.compare(tmp_path / "a", tmp_path / other, {"drafter"})
        assert any(what in d for d in diffs), (other, diffs)
        assert mod.main([str(tmp_path / "a"), str(tmp_path / other)]) == 1
