"""Drafter families behind the protocols of specsel.core.drafting, and a registry by name."""
from drafters.eagle import EagleDrafter
from drafters.eagle_head import EagleHead, load_eagle_head
from drafters.early_exit import EarlyExitDrafter
from drafters.lora import lora_expert, lora_experts
from drafters.model import ModelDrafter
from drafters.ngram import NgramDrafter
from drafters.registry import DrafterRegistry
from specsel.core.drafting import DraftContext, Drafter, DrafterError, Predictions, Proposal, Scorer

REGISTRY = DrafterRegistry({
    "ngram": NgramDrafter,
    "model": ModelDrafter,
    "early_exit": EarlyExitDrafter,
    "eagle": EagleDrafter,          # build("eagle", target, head_dir_or_module)
    "lora": lora_expert,            # build("lora", target, base_module, adapter_dir, adapter=name)
})
register, registered, build = REGISTRY.register, REGISTRY.names, REGISTRY.build

__all__ = ["DraftContext", "Drafter", "DrafterError", "DrafterRegistry", "Predictions", "Proposal", "REGISTRY",
           "Scorer", "build", "register", "registered", "ModelDrafter", "NgramDrafter", "EarlyExitDrafter",
           "EagleDrafter", "EagleHead", "load_eagle_head", "lora_expert", "lora_experts"]
