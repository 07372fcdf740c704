"""specsel: online drafter and speculation-length selection for speculative decoding."""
from specsel.arms import Arm, arm_grid
from specsel.engine import ArmPolicy, FixedArms, GenerationResult, RoundRecord, SpecEngine
from specsel.verify import Sampling

__all__ = ["Arm", "arm_grid", "ArmPolicy", "FixedArms", "GenerationResult", "RoundRecord", "SpecEngine", "Sampling"]
__version__ = "0.1.0"
