"""docs/results.md is written from results folders: each section's figures, command and machine come
from its summary.json, and an unreliable figure says so."""
import json

import pytest
from test_reliability import joint_study

from evaluators.results_doc import results_document
from evaluators.summary import summarize_study

from conftest import load_recipe


def write(folder, summary):
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def test_every_kind_renders_with_its_command_and_unreliable_marks(tmp_path):
    lines, config = joint_study(busy_fixed=True)
    study = write(tmp_path / "quick", {"kind": "study", "command": "specsel eval --out results/quick",
                                       "created": "2026-12-07 18:00:00", **summarize_study(lines, config)})
    pair = {"median": 1.2, "min": 1.1, "max": 1.3, "n": 3, "unreliable": "one batch's ratio moved by 40%"}
    ab = write(tmp_path / "bench_cache", {"kind": "bench_cache", "command": "python recipes/bench_cache.py",
                                          "what": "tokens/s in place / concatenating", "pairs": {"eagle@2": pair},
                                          "lossless": True, "queries": 8, "bsz": 4, "repeats": 3})
    text = results_document([study, ab, tmp_path / "empty"])
    assert "## quick (study)" in text and "`specsel eval --out results/quick`" in text
    assert "**joint setting, bsz 1**" in text and "measured: 2026-12-07 18:00:00" in text
    assert "2 of 10 batches disturbed" in text
    assert "## bench_cache (bench_cache)" in text and "1.200 (1.100-1.300) **UNRELIABLE**" in text
    assert "empty" not in text


def test_the_recipe_writes_the_document_and_refuses_a_folder_without_results(tmp_path, monkeypatch):
    write(tmp_path / "results" / "a", {"kind": "other", "command": "x", "answer": 42})
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe("write_results")
    assert recipe.main([]) == 0
    assert "- answer: 42" in (tmp_path / "docs" / "results.md").read_text()
    with pytest.raises(ValueError, match="no summary.json in"):
        recipe.main([str(tmp_path / "nothing")])
