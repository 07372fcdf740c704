"""Arms: (drafter, gamma) pairs the selection rules choose between."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Arm:
    """Play `drafter` with speculation length `gamma`. drafter=None, gamma=0: plain autoregressive."""
    drafter: str | None
    gamma: int

    def __post_init__(self):
        if self.drafter is None:
            if self.gamma != 0:
                raise ValueError("the autoregressive arm has gamma 0; use Arm.autoregressive()")
        elif not isinstance(self.gamma, int) or self.gamma < 1:
            raise ValueError(f"arm {self.drafter}: gamma must be an integer >= 1 (got {self.gamma!r})")

    @classmethod
    def autoregressive(cls) -> "Arm":
        return cls(None, 0)

    @property
    def is_autoregressive(self) -> bool:
        return self.drafter is None

    def __str__(self) -> str:
        return "autoregressive" if self.drafter is None else f"{self.drafter}@{self.gamma}"


def arm_grid(drafters: Iterable[str], gammas: Iterable[int]) -> list[Arm]:
    """Every (drafter, gamma) pair, drafter-major."""
    gammas = list(gammas)
    return [Arm(d, g) for d in drafters for g in gammas]


def validate_arms(arms: Iterable[Arm], pool: Iterable[str]) -> None:
    """Raise a one-line error for an arm whose drafter is not in the pool."""
    pool = set(pool)
    for arm in arms:
        if arm.drafter is not None and arm.drafter not in pool:
            raise ValueError(f"arm {arm}: unknown drafter '{arm.drafter}'; the pool has: {', '.join(sorted(pool)) or 'nothing'}")
