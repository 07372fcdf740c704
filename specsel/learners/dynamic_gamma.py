"""`dynamic_gamma`: Hugging Face's dynamic draft length, as an ArmPolicy (the baseline users know).

Assisted generation in transformers (`num_assistant_tokens_schedule="heuristic"`) keeps one
draft length per request and, after each round with n draft tokens of which a were accepted,
sets (docs/design.md, "Learners", eq. 17)

    gamma <- gamma + 2            if a == n   (every draft accepted)
    gamma <- max(1, gamma - 1)    otherwise

Here every row keeps its own gamma, with one fixed drafter. Two choices where transformers
has nothing to copy: a round in which the drafter proposed nothing (an n-gram miss, or no
room left under max_new_tokens) leaves gamma as it is, since no draft was judged; and
`max_gamma` (default: the engine's cap, MAX_GAMMA) caps the length, as a serving engine's budget would. The start is
transformers' default, 20, unless given.
"""
from __future__ import annotations

from specsel.core.arms import MAX_GAMMA, Arm
from specsel.core.policy import ArmPolicy
from specsel.core.records import RoundInfo

HF_START = 20      # transformers' default num_assistant_tokens


class DynamicGamma(ArmPolicy):
    """Play `drafter` on every row with a draft length adapted per row (module docstring)."""

    def __init__(self, drafter: str, start: int = HF_START, max_gamma: int | None = None):
        if not isinstance(start, int) or not 1 <= start <= MAX_GAMMA:
            raise ValueError(f"dynamic_gamma start must be an integer in [1, {MAX_GAMMA}] (got {start!r})")
        if max_gamma is not None and (not isinstance(max_gamma, int) or not 1 <= max_gamma <= MAX_GAMMA):
            raise ValueError(f"dynamic_gamma max_gamma must be an integer in [1, {MAX_GAMMA}] (the engine's cap), "
                             f"or None for the cap (got {max_gamma!r})")
        self.drafter, self.start_gamma, self.max_gamma = drafter, start, max_gamma
        self.arms = [Arm(drafter, self._cap(start))]     # checked against the pool by the engine
        self.gamma: dict[int, int] = {}

    def _cap(self, gamma: int) -> int:
        return min(gamma, MAX_GAMMA if self.max_gamma is None else self.max_gamma)

    def start(self, n_rows: int) -> None:
        self.gamma = {}

    def select(self, rows: list[int]) -> list[Arm]:
        for r in rows:                                     # a row starts at the start length
            self.gamma.setdefault(r, self._cap(self.start_gamma))
        return [Arm(self.drafter, self.gamma[r]) for r in rows]

    def forget(self, row: int) -> None:
        self.gamma.pop(row, None)

    def observe(self, info: RoundInfo) -> None:
        for row, rec in zip(info.rows, info.records):
            if rec.drafted == 0:
                continue                                   # nothing was drafted: no evidence
            now = self.gamma.get(row, self._cap(self.start_gamma))
            self.gamma[row] = self._cap(now + 2) if rec.accepted == rec.drafted else max(1, now - 1)
