"""`lora` drafters: domain experts = one base drafter + PEFT LoRA adapters.

One base module stays in memory (an EAGLE head or a small causal LM); PEFT injects every
adapter into it once, and each expert drafter activates its own adapter around its forwards
(`AdapterSet.activate`), so switching experts per arm costs nothing but the flag. The plain base is
available as a drafter too, run with the adapters disabled. Each drafter keeps its own KV
cache: an adapter changes keys and values.

    pool = lora_experts(target, load_eagle_head(path, target), {"lora_math": dir_math, ...},
                        base_name="eagle")
    # -> {"eagle": ..., "lora_math": ..., ...}: every value is a Drafter for the engine

Adapters load from one directory per domain (PEFT's adapter_config.json +
adapter_model.safetensors, as written by recipes/train_lora_drafter.py).
"""
from __future__ import annotations

import weakref
from pathlib import Path

import torch
from torch import nn

from .base import DrafterError
from .eagle import EagleDrafter, EagleHead
from .model import ModelDrafter


def _check_adapter_dir(name: str, path) -> None:
    if not (Path(path) / "adapter_config.json").exists():
        raise DrafterError(f"lora adapter '{name}': no adapter_config.json in {path}; point at a directory "
                           "written by recipes/train_lora_drafter.py or PeftModel.save_pretrained")


def _lora_layers(module: nn.Module) -> list:
    from peft.tuners.tuners_utils import BaseTunerLayer
    return [m for m in module.modules() if isinstance(m, BaseTunerLayer)]


_UNKNOWN = object()      # AdapterSet.active before the first activate(): forces a switch


class AdapterSet:
    """A base module with PEFT LoRA adapters injected; `activate(name)` activates one (None: none)."""

    def __init__(self, base: nn.Module, adapters: dict[str, str | Path]):
        from peft import PeftModel
        if not adapters:
            raise DrafterError("lora: give at least one adapter directory")
        for name, path in adapters.items():
            _check_adapter_dir(name, path)
        items = list(adapters.items())
        self.peft = PeftModel.from_pretrained(base, str(items[0][1]), adapter_name=items[0][0])
        self.module = base              # the base module, LoRA layers injected in place
        self.names = [items[0][0]]
        for name, path in items[1:]:
            self.add(name, path)
        self.peft.eval()
        self.layers = _lora_layers(base)
        self.active = _UNKNOWN

    def add(self, name: str, path) -> None:
        if name in self.names:
            raise DrafterError(f"lora adapter '{name}' is already loaded on this base; pick another name")
        _check_adapter_dir(name, path)
        self.peft.load_adapter(str(path), adapter_name=name)
        self.names.append(name)
        self.peft.eval()
        self.layers = _lora_layers(self.module)
        self.active = _UNKNOWN

    def activate(self, adapter: str | None) -> None:
        """Make `adapter` the active one (None: the plain base) for the forwards that follow.
        PEFT's set_adapter / disable_adapter walk every module and reset requires_grad: 7% of a
        profiled joint-setting HedgeSpec run on CPU (experts switch several times a round). For
        inference only the two flags each LoRA layer's forward reads need to change, and only
        when the choice changes (tests/test_lora.py checks the outputs of every switch)."""
        if adapter == self.active:
            return
        for layer in self.layers:
            layer._disable_adapters = adapter is None
            if adapter is not None:
                layer._active_adapter = [adapter]
        self.active = adapter


_ADAPTER_SETS: "weakref.WeakKeyDictionary[nn.Module, AdapterSet]" = weakref.WeakKeyDictionary()


class _Scoped:
    """Runs a drafter's forwards with its adapter active."""
    adapters: AdapterSet
    adapter: str | None

    def _activate(self) -> None:
        if self.adapters is not None:
            self.adapters.activate(self.adapter)

    def propose(self, ctx, rows, gammas):
        self._activate()
        return super().propose(ctx, rows, gammas)

    def commit(self, ctx, rows, want_predictions: bool = False):
        self._activate()
        return super().commit(ctx, rows, want_predictions)

    def scores(self, ctx, rows, since):
        self._activate()
        return super().scores(ctx, rows, since)


class LoraEagleDrafter(_Scoped, EagleDrafter):
    def __init__(self, target, adapters: AdapterSet, adapter: str | None, name: str | None = None, **eagle_kw):
        self.adapters, self.adapter = adapters, adapter
        super().__init__(target, adapters.module, name=name, **eagle_kw)


class LoraModelDrafter(_Scoped, ModelDrafter):
    def __init__(self, adapters: AdapterSet, adapter: str | None, name: str | None = None):
        self.adapters, self.adapter = adapters, adapter
        super().__init__(adapters.module, name=name)


def lora_experts(target, base: nn.Module, adapters: dict[str, str | Path], base_name: str | None = None,
                 **drafter_kw) -> dict:
    """{name: drafter} for every adapter (and the plain base as `base_name`, if given), all
    sharing one base module. `base`: an EagleHead or a causal LM sharing the target's tokenizer."""
    if base in _ADAPTER_SETS:
        raise DrafterError("this base module already carries adapters: build every expert of one base in one "
                           "lora_experts call, or add them one by one with lora_expert()")
    adapter_set = AdapterSet(base, adapters)
    _ADAPTER_SETS[base] = adapter_set
    if isinstance(base, EagleHead):
        make = lambda adapter, name: LoraEagleDrafter(target, adapter_set, adapter, name, **drafter_kw)  # noqa: E731
    else:
        make = lambda adapter, name: LoraModelDrafter(adapter_set, adapter, name)  # noqa: E731
    pool = {}
    if base_name:
        pool[base_name] = make(None, base_name)
    for name in adapter_set.names:
        pool[name] = make(name, name)
    return pool


def lora_expert(target, base: nn.Module, adapter_dir: str | Path, adapter: str | None = None):
    """One expert drafter (registry factory `lora`): `adapter_dir` loaded onto `base` under the
    name `adapter` (default: the directory's name). Experts built on the same base object
    share it: one base in memory, however many adapters."""
    adapter = adapter or Path(adapter_dir).name
    if base in _ADAPTER_SETS:
        _ADAPTER_SETS[base].add(adapter, adapter_dir)
    else:
        _ADAPTER_SETS[base] = AdapterSet(base, {adapter: adapter_dir})
    adapters = _ADAPTER_SETS[base]
    if isinstance(base, EagleHead):
        return LoraEagleDrafter(target, adapters, adapter, name=adapter)
    return LoraModelDrafter(adapters, adapter, name=adapter)


def new_lora(base: nn.Module, rank: int = 8, alpha: int = 16, seed: int = 0):
    """A trainable PEFT model with one fresh LoRA adapter on every linear layer of `base`
    (EAGLE head: fc and the decoder layer; causal LM: attention and MLP projections)."""
    from peft import LoraConfig, get_peft_model
    modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    if isinstance(base, EagleHead):
        modules.append("fc")
    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=modules, bias="none")
    return get_peft_model(base, config)
