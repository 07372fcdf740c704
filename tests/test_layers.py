"""Data flows one way (docs/design.md, "Layers"): no module imports from a layer above its own,
counting imports inside functions too."""
import ast
from pathlib import Path

import pytest

from conftest import REPO

ROOT = REPO

# (who, what it must not import); names are module prefixes
RULES = [
    ("specsel.core", ("specsel.modeling", "specsel.engine", "specsel.learners", "specsel.study", "specsel.data",
                      "specsel.cli", "drafters", "evaluators")),
    ("specsel.modeling", ("specsel.engine", "specsel.learners", "specsel.study", "specsel.cli", "drafters",
                          "evaluators")),
    ("specsel.engine", ("specsel.learners", "specsel.study", "specsel.cli", "drafters", "evaluators")),
    ("drafters", ("specsel.engine", "specsel.learners", "specsel.study", "specsel.cli", "evaluators")),
    ("specsel.learners", ("specsel.engine", "specsel.study", "specsel.cli", "drafters", "evaluators")),
    ("evaluators", ("specsel.modeling", "specsel.engine", "specsel.learners", "specsel.study", "specsel.cli",
                    "drafters", "specsel.replay.simulate", "specsel.replay.learners")),
    # replay: learners on records (its records-only modules, fixed and fullinfo, sit below the evaluators)
    ("specsel.replay", ("specsel.modeling", "specsel.engine", "specsel.study", "specsel.cli", "drafters",
                        "evaluators")),
    ("specsel.replay.fixed", ("specsel.learners", "evaluators")),
    ("specsel.replay.fullinfo", ("specsel.learners", "evaluators")),
    ("specsel.data", ("specsel.engine", "specsel.learners", "specsel.study", "specsel.cli", "drafters",
                      "evaluators")),
    # the server sits beside the study: the CLI builds its policy and pool and hands them over
    ("specsel.serve", ("specsel.study", "specsel.cli", "drafters", "evaluators")),
]
# and nothing below the command line imports the server
RULES = [(who, banned if who == "specsel.serve" else banned + ("specsel.serve",)) for who, banned in RULES] + \
    [("specsel.study", ("specsel.serve", "specsel.cli"))]


def modules():
    for pkg in ("specsel", "drafters", "evaluators"):
        for path in (ROOT / pkg).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            yield name, path


def imports(path: Path, name: str):
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            yield base


def under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


@pytest.mark.parametrize("who,banned", RULES, ids=[r[0] for r in RULES])
def test_no_layer_imports_from_above(who, banned):
    broken = [f"{name} -> {target}" for name, path in modules() if under(name, who)
              for target in imports(path, name) if any(under(target, b) for b in banned)]
    assert not broken


def test_only_the_study_and_the_cli_import_evaluators_inside_specsel():
    above = ("specsel.study", "specsel.cli")
    broken = [f"{name} -> {target}" for name, path in modules()
              if under(name, "specsel") and not any(under(name, a) for a in above)
              for target in imports(path, name) if under(target, "evaluators")]
    assert not broken


def test_no_recipe_edits_sys_path():
    assert not [p.name for p in (ROOT / "recipes").glob("*.py") if "sys.path" in p.read_text()]


def test_source_files_stay_small():
    assert not [f"{p.relative_to(ROOT)}: {n}" for _, p in modules() if (n := len(p.read_text().splitlines())) > 450]
