"""recipes/bench_ranks.py: one process against N processes, alternately, on the same cores. The
launches are faked here (each writes the summary.json a study would), so the test checks the
commands, the alternation and the arithmetic; the real study across processes is tested in
tests/study/test_ranks.py."""
import json
import subprocess
from pathlib import Path

import pytest

from conftest import load_recipe


@pytest.mark.parametrize("argv", [["--procs", "1"], ["--procs", "4", "--cores", "2"], ["--repeats", "0"]])
def test_bad_arguments_are_refused(argv):
    with pytest.raises((SystemExit, ValueError)):      # argparse's refusal, or a flag's range (read_flags)
        load_recipe("bench_ranks").main(argv)


def test_alternating_runs_and_the_speedup(tmp_path, monkeypatch, capsys):
    bench = load_recipe("bench_ranks")
    launched = []

    def fake_run(command, **kw):
        out = Path(command[command.index("--out") + 1])
        split = "torch.distributed.run" in command
        launched.append(("split" if split else "one", command[command.index("--threads") + 1]))
        out.mkdir(parents=True)
        (out / "summary.json").write_text(json.dumps({"processes": {"wall_s": 10.0 if split else 16.0}}))
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    assert bench.main(["--repeats", "3", "--json", str(tmp_path / "r.json")]) == 0
    assert launched == [("one", "2"), ("split", "1"), ("split", "1"), ("one", "2"), ("one", "2"), ("split", "1")]
    assert "speedup 1.60x, min 1.60x, max 1.60x" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["speedups"] == [1.6, 1.6, 1.6]
