"""What one round leaves behind: the record every evaluator reads (docs/design.md, "Records")."""
from __future__ import annotations

from dataclasses import dataclass

from specsel.core.arms import Arm


@dataclass
class RoundRecord:
    """What one row did in one round (enough for MAT, acceptance per position, tokens/s)."""
    row: int            # prompt index in the batch given to generate()
    round: int          # this row's round number, from 0
    drafter: str | None
    gamma: int          # gamma of the arm played
    drafted: int        # draft tokens actually verified (<= gamma: budget cap, n-gram misses)
    accepted: int       # draft tokens the verifier accepted (a final EOS/budget cut may commit fewer)
    committed: int      # tokens committed this round (accepted + bonus, cut at EOS/max_new_tokens)
    draft_s: float      # wall time of this row's drafter proposal (shared by its group)
    verify_s: float     # wall time of the round's target forward + verification (shared by all rows)
    batch: int          # rows in the round
    position_acceptance: dict[str, list[float]] | None = None  # drafter -> acceptance at each committed position
    query: int | str | None = None  # the prompt's query id (generate(query_ids=...); default: its index, = row)
    time_s: float | None = None     # seconds after generate() began when the round ended (its tokens' time)

    @classmethod
    def from_dict(cls, fields: dict) -> "RoundRecord":
        """A record read back from its dict (a stored query line's "records"); other keys are ignored."""
        return cls(**{k: fields[k] for k in cls.__dataclass_fields__ if k in fields})


@dataclass
class RoundInfo:
    """Everything a policy may learn from after a round (local order = `rows`)."""
    rows: list[int]
    arms: list[Arm]
    records: list[RoundRecord]
