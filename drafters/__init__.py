"""Drafter families behind one interface (see drafters.base), and a registry by name."""
from drafters.base import DraftContext, Drafter, DrafterError, Predictions, Proposal, build, register, registered
from drafters.early_exit import EarlyExitDrafter
from drafters.model import ModelDrafter
from drafters.ngram import NgramDrafter

register("ngram", NgramDrafter)
register("model", ModelDrafter)
register("early_exit", EarlyExitDrafter)

__all__ = ["DraftContext", "Drafter", "DrafterError", "Predictions", "Proposal", "build", "register",
           "registered", "ModelDrafter", "NgramDrafter", "EarlyExitDrafter"]
