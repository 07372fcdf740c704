"""`specsel load`: bad input is one line before anything loads."""
import pytest

from specsel.cli import main


@pytest.mark.parametrize("argv,needle", [
    (["--concurrency", "0"], "--concurrency must be integers >= 1 (got 0)"),
    (["--concurrency", "1,x"], "--concurrency takes comma-separated integers"),
    (["--rates", "-1"], "--rates must be > 0"),
    (["--rates", "fast"], "--rates takes comma-separated requests per second"),
    (["--concurrency", "", "--rates", ""], "must name at least one load"),
    (["--learners", "thompson"], "--learners: unknown thompson"),
    (["--max-batch", "0"], "--max-batch must be an integer >= 1"),
    (["--chunk", "0"], "--chunk and --tune-limit must be >= 1"),
    (["--repeats", "0"], "--repeats must be an integer >= 1"),
])
def test_bad_load_options_are_one_line(argv, needle, tmp_path, capsys, monkeypatch):
    import specsel.modeling.target as target
    monkeypatch.setattr(target, "load_target", lambda *a, **k: pytest.fail("loaded the target"))
    assert main(["load", "--out", str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and err.startswith("specsel load: error:")


def test_an_out_folder_with_results_needs_resume(tmp_path, capsys):
    (tmp_path / "queries.jsonl").write_text("{}\n")
    assert main(["load", "--out", str(tmp_path)]) == 2
    assert "pass --resume to continue it" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["load", "--out", str(tmp_path / "file")]) == 2
    assert "is a file; pass a folder" in capsys.readouterr().err
