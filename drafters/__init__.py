"""Drafter families behind one interface (see drafters.base), and a registry by name."""
from drafters.base import DraftContext, Drafter, DrafterError, Predictions, Proposal, build, register, registered
from drafters.eagle import EagleDrafter, EagleHead, load_eagle_head
from drafters.early_exit import EarlyExitDrafter
from drafters.lora import lora_expert, lora_experts
from drafters.model import ModelDrafter
from drafters.ngram import NgramDrafter

register("ngram", NgramDrafter)
register("model", ModelDrafter)
register("early_exit", EarlyExitDrafter)
register("eagle", EagleDrafter)          # build("eagle", target, head_dir_or_module)
register("lora", lora_expert)            # build("lora", target, base_module, adapter_dir, adapter=name)

__all__ = ["DraftContext", "Drafter", "DrafterError", "Predictions", "Proposal", "build", "register",
           "registered", "ModelDrafter", "NgramDrafter", "EarlyExitDrafter", "EagleDrafter", "EagleHead",
           "load_eagle_head", "lora_expert", "lora_experts"]
