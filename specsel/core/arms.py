"""Arms: (drafter, gamma) pairs the selection rules choose between.

One arm has one written form, ``str(arm)``: ``"DRAFTER@GAMMA"`` or ``"autoregressive"``;
``Arm.parse`` reads it back. Learners see arms by index; ``arm_pairs`` gives the
``(drafter index, gamma)`` pairs the feedback code computes with.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

AUTOREGRESSIVE = "autoregressive"
# the longest draft an arm may play: acceptance decays geometrically along a draft, so draft
# tokens past a few dozen are all but never accepted, while each still costs a drafter step and
# a verified position (an EAGLE arm at gamma 200 took 23 s for 12 tokens)
MAX_GAMMA = 64


@dataclass(frozen=True)
class Arm:
    """Play `drafter` with speculation length `gamma`. drafter=None, gamma=0: plain autoregressive."""
    drafter: str | None
    gamma: int

    def __post_init__(self):
        if self.drafter is None:
            if self.gamma != 0:
                raise ValueError("the autoregressive arm has gamma 0; use Arm.autoregressive()")
            return
        if not isinstance(self.drafter, str) or not self.drafter:
            raise ValueError(f"an arm's drafter is a pool name (a non-empty str), or None for autoregressive "
                             f"(got {self.drafter!r}): e.g. Arm(\"ngram\", 4)")
        if isinstance(self.gamma, bool) or not isinstance(self.gamma, int) or self.gamma < 1:
            raise ValueError(f"arm {self.drafter}: gamma must be an integer >= 1 (got {self.gamma!r})")
        if self.gamma > MAX_GAMMA:
            raise ValueError(f"arm {self.drafter}: gamma {self.gamma} is above the cap of {MAX_GAMMA} (MAX_GAMMA): "
                             f"a longer draft cannot pay (its late tokens are all but never accepted); "
                             f"use a gamma of at most {MAX_GAMMA}")

    @classmethod
    def autoregressive(cls) -> "Arm":
        return cls(None, 0)

    @classmethod
    def parse(cls, text: str) -> "Arm":
        """The arm written as ``"DRAFTER@GAMMA"`` (or ``"autoregressive"``)."""
        if not isinstance(text, str):
            raise ValueError(f"an arm name is a str DRAFTER@GAMMA (got {text!r})")
        if text == AUTOREGRESSIVE:
            return cls.autoregressive()
        drafter, _, gamma = text.rpartition("@")
        if not drafter or not gamma.isascii() or not gamma.isdigit() or int(gamma) < 1:
            raise ValueError(f"bad arm name {text!r}: expected DRAFTER@GAMMA with GAMMA >= 1")
        return cls(drafter, int(gamma))

    @property
    def is_autoregressive(self) -> bool:
        return self.drafter is None

    def __str__(self) -> str:
        return AUTOREGRESSIVE if self.drafter is None else f"{self.drafter}@{self.gamma}"


def arm_name(drafter: str | None, gamma: int) -> str:
    """The written form of the arm (drafter, gamma), as str(Arm(...))."""
    return str(Arm.autoregressive() if drafter is None else Arm(drafter, int(gamma)))


def arm_grid(drafters: Iterable[str], gammas: Iterable[int]) -> list[Arm]:
    """Every (drafter, gamma) pair, drafter-major."""
    gammas = list(gammas)
    return [Arm(d, g) for d in drafters for g in gammas]


def validate_arms(arms: Iterable[Arm], pool: Iterable[str], where: str | None = None) -> None:
    """Raise a one-line error for an arm whose drafter is not in the pool; `where` replaces the
    message's "; the pool has: ..." (e.g. to name another list of drafters and its fix)."""
    pool = list(pool)
    for arm in arms:
        if arm.drafter is not None and arm.drafter not in pool:
            said = where if where is not None else f"; the pool has: {', '.join(sorted(pool)) or 'nothing'}"
            raise ValueError(f"arm {arm}: unknown drafter '{arm.drafter}'{said}")


ArmPair = tuple[int, int]   # an arm's index form: (drafter index in a list of drafters, gamma); replay and learners


def arm_pairs(arms: Sequence[Arm], drafters: Sequence[str]) -> list[ArmPair]:
    """Arms as (drafter index in `drafters`, gamma); the autoregressive arm is (0, 0)."""
    index = {name: j for j, name in enumerate(drafters)}
    return [(0, 0) if a.drafter is None else (index[a.drafter], a.gamma) for a in arms]
