"""Speculation rules that look at the load: how many requests run in this round (the baselines of
the load study, docs/design.md, "Load").

    BatchRule(Arm("eagle", 2), max_rows=4)     # vLLM's rule: speculate with one arm while at most
                                               # `max_rows` requests run, otherwise decode plainly
    GammaTable("eagle", {1: 4, 2: 4, 4: 2, 8: 0})   # serving engines' batch-size -> gamma table:
                                               # the gamma of the largest key <= rows running (0: plain)

Both are chosen on tuning queries (specsel load --tune) and never learn; every row of a round
plays the same arm.
"""
from __future__ import annotations

from typing import Mapping

from specsel.core.arms import MAX_GAMMA, Arm
from specsel.core.policy import ArmPolicy


class BatchRule(ArmPolicy):
    """Play `arm` while at most `max_rows` requests run in the round, else the autoregressive arm."""

    def __init__(self, arm: Arm, max_rows: int):
        if not isinstance(arm, Arm) or arm.is_autoregressive:
            raise ValueError(f"BatchRule needs a speculative arm, e.g. Arm('eagle', 2) (got {arm!r})")
        if not isinstance(max_rows, int) or max_rows < 0:
            raise ValueError(f"max_rows must be an integer >= 0 (got {max_rows!r}); 0 never speculates")
        self.arm, self.max_rows = arm, max_rows
        self.arms = [arm, Arm.autoregressive()]

    def select(self, rows: list[int]) -> list[Arm]:
        return [self.arm if len(rows) <= self.max_rows else Arm.autoregressive()] * len(rows)

    def __repr__(self) -> str:
        return f"BatchRule({self.arm}, max_rows={self.max_rows})"


class GammaTable(ArmPolicy):
    """Play `drafter` at the gamma the table gives the number of requests running (the entry of the
    largest key at most that number; 0: plain decoding)."""

    def __init__(self, drafter: str, table: Mapping[int, int]):
        if not table or any(not isinstance(k, int) or k < 1 for k in table):
            raise ValueError(f"a gamma table maps batch sizes >= 1 to gammas (got {dict(table)!r}); "
                             "e.g. {1: 4, 8: 0}")
        if any(not isinstance(g, int) or not 0 <= g <= MAX_GAMMA for g in table.values()):
            raise ValueError(f"a gamma table's gammas are integers in [0, {MAX_GAMMA}] (got {dict(table)!r})")
        self.drafter, self.table = drafter, dict(sorted(table.items()))
        self.arms = [Arm(drafter, g) for g in set(self.table.values()) if g > 0] + [Arm.autoregressive()]

    def gamma(self, running: int) -> int:
        keys = [k for k in self.table if k <= running]
        return self.table[keys[-1]] if keys else self.table[min(self.table)]

    def select(self, rows: list[int]) -> list[Arm]:
        g = self.gamma(len(rows))
        return [Arm(self.drafter, g) if g > 0 else Arm.autoregressive()] * len(rows)

    def __repr__(self) -> str:
        return f"GammaTable({self.drafter}, {self.table})"
