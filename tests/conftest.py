import copy
import functools
from pathlib import Path

import pytest
import torch

from specsel.testing import tiny_model

REPO = Path(__file__).resolve().parent.parent     # the repository root (tests live one or two levels below)


def load_recipe(name: str):
    """The module recipes/<name>.py, loaded from its file (recipes are scripts, not a package)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", REPO / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.lru_cache(maxsize=None)
def target_model(arch: str):
    return tiny_model(arch, seed=0)


def noisy_copy(model, scale: float = 0.5, seed: int = 1):
    """A drafter close to `model` but not equal: accepts some drafts, rejects others."""
    torch.manual_seed(seed)
    draft = copy.deepcopy(model)
    with torch.no_grad():
        for p in draft.parameters():
            p.add_(torch.randn_like(p) * scale * p.std().clamp_min(1e-3))
    return draft


@functools.lru_cache(maxsize=None)
def drafter_models(arch: str):
    target = target_model(arch)
    return {"self": target, "noisy": noisy_copy(target), "other": tiny_model(arch, seed=7)}


def hf_greedy(model, prompt, max_new_tokens, eos_token_id=1):
    """The target's own greedy decoding of one prompt alone (transformers generate)."""
    out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                         max_new_tokens=max_new_tokens, do_sample=False,
                         eos_token_id=eos_token_id, pad_token_id=0)
    return out[0, len(prompt):].tolist()


@pytest.fixture(params=["llama", "qwen2"])
def arch(request):
    return request.param


@pytest.fixture
def tmp_data(tmp_path, monkeypatch):
    """A fixture data dir under tmp_path, with the datasets cache kept there too."""
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    root = tmp_path / "data"
    root.mkdir()
    return root


@pytest.fixture
def clean_user_domains():
    """No user domain (NAME=PATH) registered before or after the test: the registry is process-wide."""
    from specsel.data.registry import clear_user_domains
    clear_user_domains()
    yield
    clear_user_domains()


def one_line_error(call) -> str:
    """The message of the one-line DataError `call()` raises."""
    from specsel.data import DataError
    with pytest.raises(DataError) as err:
        call()
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def one_line(info, *needles) -> str:
    """The message of a caught exception (pytest.raises(...) as info): one line holding every needle."""
    msg = str(info.value)
    assert msg and "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    return msg


def fake_hub(monkeypatch, rows) -> list:
    """Point datasets.load_dataset at in-memory rows (a list, or a function of the config name);
    returns the (path, config, split) of every call, as they come."""
    import datasets

    calls = []

    def load(path, name=None, split=None, **kw):
        calls.append((path, name, split))
        return datasets.Dataset.from_list(rows(name) if callable(rows) else rows)

    monkeypatch.setattr(datasets, "load_dataset", load)
    return calls
