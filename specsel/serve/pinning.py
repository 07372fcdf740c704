"""The server's policy with per-request pins: a request that pinned an arm (an A/B test) plays it;
every other row plays what the policy chooses. The policy still chooses for pinned rows (its
per-row state stays whole) but learns only from the rows it decided: their acceptance and, for a
throughput learner, the round's timings (which are real whatever the rows played)."""
from __future__ import annotations

from typing import Callable

from specsel.core.arms import Arm
from specsel.core.policy import ArmPolicy
from specsel.core.records import RoundInfo


class PinnedPolicy(ArmPolicy):
    def __init__(self, base: ArmPolicy, pin_of: Callable[[int], Arm | None]):
        self.base, self.pin_of = base, pin_of
        self.needs_full_information = base.needs_full_information
        self.arms = base.arms

    def seek(self, query: int) -> None:
        self.base.seek(query)

    def restore(self, batches) -> None:
        self.base.restore(batches)

    def start(self, n_rows: int) -> None:
        self.base.start(n_rows)

    def select(self, rows: list[int]) -> list[Arm]:
        chosen = self.base.select(rows)
        return [self.pin_of(r) or a for r, a in zip(rows, chosen)]

    def timed(self, info: RoundInfo) -> None:
        self.base.timed(info)

    def observe(self, info: RoundInfo) -> None:
        keep = [i for i, r in enumerate(info.rows) if self.pin_of(r) is None]
        if len(keep) == len(info.rows):
            self.base.observe(info)
        elif keep:
            self.base.observe(RoundInfo([info.rows[i] for i in keep], [info.arms[i] for i in keep],
                                        [info.records[i] for i in keep]))

    def scored_drafters(self):
        return self.base.scored_drafters()

    def finish(self, row: int) -> None:
        self.base.finish(row)

    def forget(self, row: int) -> None:
        self.base.forget(row)
