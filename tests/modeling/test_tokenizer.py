"""load_tokenizer: a target's tokenizer without its weights (what `specsel load --url` encodes with)."""
from __future__ import annotations

import pytest
from test_target import save_tiny, tiny_tokenizer

from specsel.modeling import target as T
from specsel.modeling.target import TargetError, load_target
from specsel.modeling.tokenizer import load_tokenizer


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECSEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_a_directory_with_only_tokenizer_files_is_enough(tmp_path):
    tiny_tokenizer(pad=False).save_pretrained(tmp_path)          # no config.json, no weights
    tok = load_tokenizer(str(tmp_path))
    assert tok("hello world")["input_ids"] == tiny_tokenizer()("hello world")["input_ids"]
    assert tok.pad_token == tok.eos_token == "</s>"                # as load_target gives it
    with pytest.raises(TargetError):
        load_target(str(tmp_path))                                 # the model itself is not there


def test_it_is_the_tokenizer_load_target_gives(tmp_path):
    save_tiny(tmp_path)
    _, want = load_target(str(tmp_path))
    got = load_tokenizer(str(tmp_path))
    assert got("what is two plus two")["input_ids"] == want("what is two plus two")["input_ids"]
    assert (got.pad_token, got.eos_token) == (want.pad_token, want.eos_token)


def test_the_embedded_default_reads_its_cache_without_the_weights(tmp_path, monkeypatch):
    cache = T.embedded_cache_dir()
    cache.mkdir(parents=True)
    tiny_tokenizer().save_pretrained(cache)
    monkeypatch.setattr(T, "_cache_complete", lambda directory: directory == cache)
    monkeypatch.setattr(T, "load_target", lambda *a, **k: pytest.fail("the weights were loaded"))
    assert load_tokenizer(T.EMBEDDED_DEFAULT)("hello")["input_ids"] == tiny_tokenizer()("hello")["input_ids"]


@pytest.mark.parametrize("spec, match", [
    ("", "non-empty string"),
    ("./no/such/dir", "no such directory"),
])
def test_bad_specs_are_one_line_errors(spec, match):
    with pytest.raises(TargetError, match=match):
        load_tokenizer(spec)


def test_a_file_that_is_not_gguf_is_refused(tmp_path):
    f = tmp_path / "model.bin"
    f.write_bytes(b"x")
    with pytest.raises(TargetError, match="not a model directory"):
        load_tokenizer(str(f))


def test_an_empty_directory_names_the_fix(tmp_path):
    with pytest.raises(TargetError, match="tokenizer of") as e:
        load_tokenizer(str(tmp_path))
    assert "\n" not in str(e.value)
