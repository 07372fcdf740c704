"""Training checkpoints hold tensors and plain types only, so they load with torch.load(weights_only=True):
nothing in a checkpoint file is run when it is read."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch


def plain(value):
    """`value` as what torch.load(weights_only=True) reads: dicts, lists, str, int, float, bool,
    None, tensors (tuples become lists, numpy values lists or Python numbers, 0-d tensors Python
    numbers, anything else its str)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if isinstance(value, torch.Tensor):
        return value.item() if value.ndim == 0 else value.detach().cpu()
    return str(value)


def load_checkpoint(ckpt: Path) -> dict:
    """A training checkpoint, loaded with weights_only=True (tensors and plain types, nothing run on load)."""
    try:
        return torch.load(ckpt, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f"{ckpt} holds objects other than tensors and plain types (written by an older version?): "
                         f"delete it to start over ({str(e).splitlines()[0]})") from None
