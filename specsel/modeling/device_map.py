"""A target larger than one device: its layers spread over the visible GPUs (or offloaded to
CPU memory or disk) with accelerate's device map (``--device-map auto|balanced|FILE.json``).

accelerate hooks every placed module so its inputs move to its device and the model's outputs
come back to the device of its inputs; the engine keeps its own tensors (the ragged cache's
bookkeeping, the verify step) on the device of the input embeddings (``model.device``).
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

DEVICE_MAP_CHOICES = ("auto", "balanced")
DEVICE_MAP_HELP = ("spread the target over several devices with accelerate: auto, balanced, or a JSON file of module "
                   "name to device (a GPU index, cpu or disk); for targets larger than one GPU")


class DeviceMapError(ValueError):
    """A bad --device-map; the message is one line that names the fix."""


def read_device_map(spec) -> str | dict:
    """'auto', 'balanced', a {module name: device} dict, or a JSON file holding one."""
    if isinstance(spec, dict):
        return spec
    text = str(spec)
    if text in DEVICE_MAP_CHOICES:
        return text
    path = Path(text).expanduser()
    if not path.is_file():
        raise DeviceMapError(f"--device-map {text}: not auto or balanced, and no such file; pass auto, balanced or "
                             'a JSON file like {"model.embed_tokens": 0, "model.layers.0": 0, ..., "lm_head": 1}')
    try:
        mapping = json.loads(path.read_text())
    except ValueError as exc:
        raise DeviceMapError(f"--device-map {path}: not valid JSON ({exc}); write one object of module name to "
                             "device (a GPU index, 'cpu' or 'disk')") from None
    if not isinstance(mapping, dict) or not mapping:
        raise DeviceMapError(f"--device-map {path}: must hold one non-empty JSON object of module name to device")
    return mapping


def dispatch(model, spec, offload_dir: str | Path | None = None):
    """`model` (loaded on the CPU) placed by the device map `spec` (read_device_map); modules
    mapped to 'disk' are offloaded to `offload_dir` (default: a temporary folder)."""
    from accelerate import dispatch_model, infer_auto_device_map
    from accelerate.utils import get_balanced_memory

    mapping = read_device_map(spec)
    no_split = getattr(model, "_no_split_modules", None) or []
    if isinstance(mapping, str):                # auto: fill devices in order; balanced: even shares
        memory = get_balanced_memory(model, no_split_module_classes=no_split) if mapping == "balanced" else None
        mapping = infer_auto_device_map(model, max_memory=memory, no_split_module_classes=no_split)
    names = {name for name, _ in model.named_modules()}
    unknown = [name for name in mapping if name not in names and name != ""]
    if unknown:
        raise DeviceMapError(f"--device-map: the target has no module {unknown[0]!r}; name modules as in "
                             "model.named_modules(), e.g. model.layers.0")
    if "disk" in mapping.values() and offload_dir is None:
        offload_dir = tempfile.mkdtemp(prefix="specsel-offload-")
    try:
        return dispatch_model(model, device_map=mapping, offload_dir=offload_dir)
    except (ValueError, RuntimeError) as exc:
        raise DeviceMapError(f"--device-map: {str(exc).splitlines()[0]}; every module of the target needs a "
                             "device (map a parent, e.g. model.layers.5, to place its children)") from None
