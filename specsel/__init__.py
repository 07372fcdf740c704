"""specsel: online drafter and speculation-length selection for speculative decoding.

Names are imported lazily, so `import specsel.learners` (pure numpy) never loads torch.
"""
import importlib

_EXPORTS = {
    "Arm": "specsel.core.arms", "arm_grid": "specsel.core.arms",
    "ArmPolicy": "specsel.core.policy", "FixedArms": "specsel.core.policy",
    "RoundRecord": "specsel.core.records", "Sampling": "specsel.core.sampling",
    "RequestSampling": "specsel.core.sampling",
    "GenerationResult": "specsel.engine.loop", "SpecEngine": "specsel.engine.loop",
    "PrefillCache": "specsel.engine.prefill",
}
__all__ = list(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'specsel' has no attribute {name!r}")
