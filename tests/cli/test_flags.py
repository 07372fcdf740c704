"""specsel.flags: one table of flags for every command and recipe, one error path."""
from __future__ import annotations

import ast

import pytest

from specsel.core.defaults import EMBEDDED_DEFAULT
from specsel.flags import FLAGS, add_flags, flag_parser, one_int, parse_flags, run_command
from specsel.options import BOUNDS, OptionError
from specsel.study import StudyConfig

from conftest import REPO


def declared(path) -> list[str]:
    """The flags a file declares itself (add_argument("--x", ...))."""
    return [node.args[0].value for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument" and node.args
            and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).startswith("--")]


def test_no_recipe_declares_a_flag_the_shared_table_has():
    shared = {f.option for f in FLAGS.values()}
    broken = {p.name: sorted(set(declared(p)) & shared) for p in sorted((REPO / "recipes").glob("*.py"))}
    assert {name: flags for name, flags in broken.items() if flags} == {}


def test_the_commands_declare_only_their_own_flags():
    shared = {f.option for f in FLAGS.values()}
    for path in (REPO / "specsel" / "cli").glob("*.py"):
        # router fit's --records takes several files (append), unlike every other --records
        assert set(declared(path)) & shared <= {"--records"}, path.name


def test_numbers_are_read_and_checked_in_one_place():
    ap = flag_parser("demo", "A demo.\nmore")
    add_flags(ap, "limit", "temperature", "bsz", "gamma", limit=7)
    args = parse_flags(ap, ["--temperature", "0.5", "--gamma", "3"])
    assert (args.limit, args.temperature, args.gamma, args.bsz) == (7, 0.5, 3, "4")
    with pytest.raises(OptionError, match=r"--limit takes an integer \(got 'x'\)"):
        parse_flags(ap, ["--limit", "x"])
    with pytest.raises(OptionError, match=r"--gamma must be an integer in \[1, 64\] \(got 0\)"):
        parse_flags(ap, ["--gamma", "0"])
    assert one_int(parse_flags(ap, ["--bsz", "2"]), "bsz") == 2
    with pytest.raises(OptionError, match="--bsz takes one value here"):
        one_int(parse_flags(ap, ["--bsz", "2,4"]), "bsz")
    with pytest.raises(KeyError, match="declare it in specsel.flags.FLAGS"):
        add_flags(ap, "no_such_flag")


def test_every_numeric_flag_with_a_range_has_it_in_the_bounds_table():
    for name in ("gamma", "gammas", "bsz", "max_new_tokens", "seed", "threads", "limit", "skip", "repeats",
                 "score_every", "temperature", "top_p", "top_k", "min_p", "folds"):
        assert name in FLAGS and name in BOUNDS


def test_the_study_takes_its_defaults_from_the_table():
    cfg = StudyConfig()
    for name in ("gamma", "gammas", "bsz", "max_new_tokens", "temperature", "top_p", "seed", "score_every",
                 "repeats", "fixed_candidates", "joint_hedgespec"):
        assert getattr(cfg, name) == FLAGS[name].default, name
    assert FLAGS["target"].default == EMBEDDED_DEFAULT


def test_one_error_path(capsys):
    def bad():
        raise ValueError("--x: broken; pass --y\nsecond line")

    def interrupted():
        raise KeyboardInterrupt
    assert run_command(bad, "demo") == 2
    assert capsys.readouterr().err == "demo: error: --x: broken; pass --y\n"
    assert run_command(interrupted, "demo") == 130
    assert run_command(lambda: 0, "demo") == 0
