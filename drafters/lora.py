"""`lora` drafters: domain experts = one base drafter + PEFT LoRA adapters.

One base module stays in memory (an EAGLE head or a small causal LM); PEFT injects every
adapter into it once (`AdapterSet`). The plain base is available as a drafter too, run
with the adapters disabled.

* EAGLE head: the experts and the plain head are members of one EagleFamily
  (drafters.eagle_family): one head KV cache with a slot per expert and row (an adapter
  changes keys and values), and head forwards that run each slot with its own adapter
  (PEFT mixed-adapter batches), so rows playing different experts draft and score together.
* causal LM: each expert drafter activates its own adapter before its forwards (the
  drafter's `activate` callback) and keeps its own KV cache.

    pool = lora_experts(target, load_eagle_head(path, target), {"lora_math": dir_math, ...},
                        base_name="eagle")
    # -> {"eagle": ..., "lora_math": ..., ...}: every value is a Drafter for the engine

Adapters load from one directory per domain (PEFT's adapter_config.json +
adapter_model.safetensors, as written by recipes/train_lora_drafter.py).
"""
from __future__ import annotations

from contextlib import contextmanager
from functools import partial
from pathlib import Path

from torch import nn

from specsel.core.drafting import DrafterError

from .eagle import EagleDrafter
from .eagle_family import EagleFamily
from .eagle_head import EagleHead
from .model import ModelDrafter


def _check_adapter_dir(name: str, path) -> None:
    if not (Path(path) / "adapter_config.json").exists():
        raise DrafterError(f"lora adapter '{name}': no adapter_config.json in {path}; point at a directory "
                           "written by recipes/train_lora_drafter.py or PeftModel.save_pretrained")


@contextmanager
def _adapter_errors(name: str, path):
    """A damaged adapter folder (truncated weights, broken JSON) is one DrafterError naming it."""
    try:
        yield
    except DrafterError:
        raise
    except Exception as err:                # SafetensorError, JSONDecodeError, ValueError, OSError
        first = (str(err).splitlines() or [""])[0]
        raise DrafterError(f"lora adapter '{name}' in {path}: cannot be loaded ({type(err).__name__}: {first}); "
                           "re-train it (recipes/train_lora_drafter.py) or restore it (the shipped ones: git "
                           "checkout drafters/weights)") from None


def _lora_layers(module: nn.Module) -> list:
    from peft.tuners.tuners_utils import BaseTunerLayer
    return [m for m in module.modules() if isinstance(m, BaseTunerLayer)]


_UNKNOWN = object()      # AdapterSet.active before the first activate(): forces a switch


class AdapterSet:
    """A base module with PEFT LoRA adapters injected; `activate(name)` activates one (None: none).
    Build one per base module and give it every adapter of that base (`add`)."""

    def __init__(self, base: nn.Module, adapters: dict[str, str | Path]):
        from peft import PeftModel
        if not adapters:
            raise DrafterError("lora: give at least one adapter directory")
        if _lora_layers(base):
            raise DrafterError("this base module already carries adapters: build every expert of one base in one "
                               "lora_experts call, or pass its AdapterSet to lora_expert()")
        for name, path in adapters.items():
            _check_adapter_dir(name, path)
        items = list(adapters.items())
        with _adapter_errors(*items[0]):
            self.peft = PeftModel.from_pretrained(base, str(items[0][1]), adapter_name=items[0][0])
        self.module = base              # the base module, LoRA layers injected in place
        self.names = [items[0][0]]
        for name, path in items[1:]:
            self.add(name, path)
        self.peft.eval()
        self.layers = _lora_layers(base)
        self.active = _UNKNOWN
        self.family: EagleFamily | None = None     # the drafters of an EAGLE head base (built with the first)

    def add(self, name: str, path) -> None:
        if name in self.names:
            raise DrafterError(f"lora adapter '{name}' is already loaded on this base; pick another name")
        _check_adapter_dir(name, path)
        with _adapter_errors(name, path):
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
        when the choice changes. They are PEFT's private attributes, so tests/test_lora.py checks
        the outputs of every switch against PEFT's own."""
        if adapter == self.active:
            return
        for layer in self.layers:
            layer._disable_adapters = adapter is None
            if adapter is not None:
                layer._active_adapter = [adapter]
        self.active = adapter

    def mixed(self, adapter_names: list[str]):
        """A context in which the base's forwards run row i with adapter adapter_names[i]
        ("__base__": none), PEFT's mixed-adapter batches; the rows' adapters may all differ."""
        for layer in self.layers:
            layer._disable_adapters = False
        self.active = _UNKNOWN
        return self.peft.base_model._enable_peft_forward_hooks(adapter_names=adapter_names)

    def drafter(self, target, adapter: str | None, name: str | None = None, **settings):
        """The drafter that runs this set's base with `adapter` active (None: the plain base).
        An EAGLE head's drafters form one family: `settings` (EagleFamily's) go with the first."""
        if not isinstance(self.module, EagleHead):
            if settings:
                raise DrafterError(f"{', '.join(settings)}: settings of EAGLE head drafters; "
                                   "a causal-LM base takes none")
            return ModelDrafter(self.module, name=name, activate=partial(self.activate, adapter))
        if self.family is None:
            self.family = EagleFamily(target, self.module, adapters=self, **settings)
        elif settings:
            raise DrafterError("the drafters of one EAGLE head share the settings of the first one built: build "
                               "every expert in one lora_experts call, with the settings there")
        return EagleDrafter(target, self.module, name=name, family=self.family, adapter=adapter)


def lora_experts(target, base: nn.Module, adapters: dict[str, str | Path], base_name: str | None = None,
                 **drafter_kw) -> dict:
    """{name: drafter} for every adapter (and the plain base as `base_name`, if given), all
    sharing one base module. `base`: an EagleHead or a causal LM sharing the target's tokenizer."""
    adapter_set = AdapterSet(base, adapters)
    members = ([(base_name, None)] if base_name else []) + [(name, name) for name in adapter_set.names]
    pool = {}
    for i, (name, adapter) in enumerate(members):
        pool[name] = adapter_set.drafter(target, adapter, name, **(drafter_kw if i == 0 else {}))
    return pool


def lora_expert(target, base: nn.Module | AdapterSet, adapter_dir: str | Path, adapter: str | None = None):
    """One expert drafter (registry factory `lora`): `adapter_dir` loaded under the name
    `adapter` (default: the directory's name). `base` is a module (a new AdapterSet is made on
    it) or an AdapterSet, to which the adapter is added: experts of one set share its base."""
    adapter = adapter or Path(adapter_dir).name
    if isinstance(base, AdapterSet):
        base.add(adapter, adapter_dir)
        adapters = base
    else:
        adapters = AdapterSet(base, {adapter: adapter_dir})
    return adapters.drafter(target, adapter, adapter)
