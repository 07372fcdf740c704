"""specsel.options: one table of the numbers every command takes. The edges of each range are
accepted, the values beyond them refused; --top-k and --min-p reach the sampler of `generate`
and of the study, are part of a study's resume identity, and greedy decoding says it leaves
them unused. (Every refusal's wording: tests/test_bad_inputs.py.)"""
import argparse
import json
import shutil

import pytest

import specsel.modeling.target
from drafters import NgramDrafter
from specsel import Sampling, SpecEngine
from specsel.cli import main
from specsel.core.arms import MAX_GAMMA
from specsel.options import BOUNDS, MAX_SEED, OptionError, check_args, check_value, unused_sampling
from specsel.study import StudyConfig, StudyError, StudyItem, run_study
from specsel.testing import random_prompts

from conftest import target_model


@pytest.mark.parametrize("name, good, bad", [
    ("gamma", [1, MAX_GAMMA], [0, MAX_GAMMA + 1, 2.0, True]),
    ("gammas", [[1, MAX_GAMMA], "1,2,4"], [[], [0, 1], "1,65", "a"]),
    ("bsz", [[1], 3, "1,16"], [[0], "0", []]),
    ("seed", [0, MAX_SEED], [-1, MAX_SEED + 1, 1.5]),
    ("temperature", [0, 0.7, 2], [-0.1, float("nan"), float("inf")]),
    ("top_p", [1e-6, 1.0], [0, 1.01]),
    ("top_k", [0, 50], [-1, 2.5]),
    ("min_p", [0.0, 0.99], [1.0, -0.1]),
    ("C", [1e-3, 10.0], [0, -1.0]),
    ("folds", [2, 10], [1]),
    ("skip", [0], [-1]),
    ("fixed_candidates", [0, 3], [-1]),
])
def test_each_range_takes_its_edges_and_refuses_beyond(name, good, bad):
    assert name in BOUNDS
    for value in good:
        check_value(name, value)
    for value in bad:
        with pytest.raises(OptionError) as info:
            check_value(name, value)
        message = str(info.value)
        assert "\n" not in message and message.startswith("--" + name.replace("_", "-"))


def test_check_args_checks_only_what_a_command_has():
    check_args(argparse.Namespace(gamma=4, seed=0, prompt="hi", threads=None))      # None: not given
    with pytest.raises(OptionError, match="--threads must be an integer >= 1"):
        check_args(argparse.Namespace(threads=0))


def test_study_errors_stay_study_errors():
    with pytest.raises(StudyError, match="--top-k"):
        StudyConfig(top_k=-1).validate()


@pytest.mark.parametrize("values, said", [
    (dict(temperature=0.0, top_k=0, top_p=1.0, min_p=0.0), None),
    (dict(temperature=0.0, top_k=5, top_p=1.0, min_p=0.0), "--top-k"),
    (dict(temperature=0.0, top_k=0, top_p=0.9, min_p=0.1), "--top-p, --min-p"),
    (dict(temperature=0.7, top_k=5, top_p=0.9, min_p=0.1), None),
])
def test_greedy_says_which_sampling_options_it_leaves_unused(values, said):
    note = unused_sampling(argparse.Namespace(**values))
    assert note is None if said is None else (said in note and "--temperature > 0" in note)


class Tok:
    """No chat template: a word's token is its length (plus 2: no pad or eos)."""
    chat_template = None
    eos_token_id = 1

    def __call__(self, text, **kw):
        return {"input_ids": [2 + len(w) for w in text.split()]}

    def decode(self, ids, **kw):
        return " ".join(map(str, ids))


@pytest.fixture
def sampled(monkeypatch):
    """The tiny target behind the command line; returns the Sampling of every seeded engine call."""
    seen = []
    real = SpecEngine.generate

    def generate(self, *args, **kwargs):
        if "seed" in kwargs:                   # a decode (the study's warm-up passes no seed)
            seen.append(kwargs.get("sampling"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(specsel.modeling.target, "load_target", lambda *a, **kw: (target_model("llama"), Tok()))
    monkeypatch.setattr(SpecEngine, "generate", generate)
    return seen


def test_generate_samples_with_top_k_and_min_p(sampled, tmp_path, capsys):
    pool = tmp_path / "pool.py"
    pool.write_text("from drafters import NgramDrafter\n\ndef build_pool(target):\n"
                    "    return {'ngram': NgramDrafter()}\n")
    assert main(["generate", "--prompt", "a b c a b c", "--pool", str(pool), "--max-new-tokens", "4",
                 "--temperature", "0.8", "--top-k", "5", "--min-p", "0.05"]) == 0
    assert sampled == [Sampling(0.8, 1.0, 5, 0.05)]
    assert "warning" not in capsys.readouterr().err


def test_greedy_generate_warns_once_of_an_unused_top_k(sampled, tmp_path, capsys):
    pool = tmp_path / "pool.py"
    pool.write_text("from drafters import NgramDrafter\n\ndef build_pool(target):\n"
                    "    return {'ngram': NgramDrafter()}\n")
    assert main(["generate", "--prompt", "a b c", "--pool", str(pool), "--max-new-tokens", "2", "--top-k", "5"]) == 0
    warnings = [l for l in capsys.readouterr().err.splitlines() if "warning" in l]
    assert warnings == ["specsel generate: warning: greedy decoding (--temperature 0) does not use --top-k; pass "
                        "--temperature > 0 to sample"]
    assert sampled == [None]


# ----------------------------------------------------------------------------- the study


def items():
    prompts = [p + p[:5] for p in random_prompts(4, min_len=3, max_len=12, seed=21)]
    return [StudyItem(f"d/{i}", "d", p) for i, p in enumerate(prompts)]


def study(out, resume=False, **kw):
    cfg = StudyConfig(**{**dict(settings=("drafter",), learners=("hedgespec",), gamma=2, gammas=(2,), bsz=(2,),
                                max_new_tokens=4, seed=3, temperature=0.8), **kw})
    return run_study(target_model("llama"), {"ngram": NgramDrafter()}, items(), cfg, out, resume=resume,
                     eos_token_id=1, progress=False, log=lambda s: None, plots=False, warn=lambda s: None)


@pytest.fixture(scope="module")
def top_k_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("topk") / "study"
    study(out, top_k=5, min_p=0.05)
    return out


def test_the_study_samples_with_top_k_and_min_p(sampled, tmp_path):
    study(tmp_path / "s", top_k=5, min_p=0.05)
    assert sampled and set(sampled) == {Sampling(0.8, 1.0, 5, 0.05)}


def test_the_study_records_top_k_and_min_p(top_k_study):
    config = json.loads((top_k_study / "config.json").read_text())
    assert (config["top_k"], config["min_p"]) == (5, 0.05)


@pytest.mark.parametrize("change, shown", [(dict(top_k=6, min_p=0.05), "top_k: 5 -> 6"),
                                           (dict(top_k=5, min_p=0.0), "min_p: 0.05 -> 0.0")])
def test_resume_refuses_another_top_k_or_min_p(top_k_study, tmp_path, change, shown):
    out = tmp_path / "copy"
    shutil.copytree(top_k_study, out)
    before = (out / "queries.jsonl").read_bytes()
    with pytest.raises(StudyError, match="was run with a different") as info:
        study(out, resume=True, **change)
    assert shown in str(info.value)
    assert (out / "queries.jsonl").read_bytes() == before
    study(out, resume=True, top_k=5, min_p=0.05)                    # the same options resume


def test_an_old_config_without_top_k_was_top_k_off(tmp_path):
    out = tmp_path / "old"
    study(out)
    path = out / "config.json"
    config = json.loads(path.read_text())
    del config["top_k"], config["min_p"]                           # written before they existed
    path.write_text(json.dumps(config))
    study(out, resume=True)                                        # off then, off now: resumes
    with pytest.raises(StudyError, match="top_k: 0 -> 5"):
        study(out, resume=True, top_k=5)
