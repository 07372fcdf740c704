"""The policy protocol: what the engine asks of whatever chooses the arms, and what an experiment
asks of it between batches (its lifecycle: `seek` a stream position, `restore` after a resume)."""
from __future__ import annotations

from typing import Collection, Sequence

from specsel.core.arms import Arm
from specsel.core.records import RoundInfo, RoundRecord


class ArmPolicy:
    """Chooses an arm per active row every round; learns from what happened."""
    needs_full_information = False   # True: only works with generate(feedback="full")
    arms: Sequence[Arm] | None = None   # the arms it may play, when known in advance (checked against the pool)

    def seek(self, query: int) -> None:
        """The next generate() call's rows are queries `query`, `query` + 1, ... of the stream (a
        policy that seeds per-query learners by stream position, LearnerPolicy, uses it to replay or
        resume a stream from its middle)."""

    def restore(self, batches: Sequence[Sequence[Sequence[RoundRecord]]]) -> None:
        """Continue from batches this policy decoded before (a resumed run): each batch is the round
        records of its queries, in row order, each query's ordered by round. A policy that learns
        across batches (a step-cost model, a stream prior) re-learns them, so it plays as if it had
        never stopped; one that keeps nothing across batches ignores them."""

    def start(self, n_rows: int) -> None:
        """A generate() call with `n_rows` new prompts begins (rows are 0..n_rows-1)."""

    def select(self, rows: list[int]) -> list[Arm]:
        raise NotImplementedError

    def timed(self, info: RoundInfo) -> None:
        """A round was verified: its records' timings (draft_s, verify_s) are final. Called every
        round, before `observe`, which may come later (full information scores in windows)."""

    def observe(self, info: RoundInfo) -> None:
        pass

    def scored_drafters(self) -> Collection[str] | None:
        """Full information: the drafters whose acceptance the policy wants for the coming rounds
        (up to the next feedback); None = every drafter. Those left out are not scored, and
        their acceptance is missing from the records (called before each scoring window)."""
        return None

    def finish(self, row: int) -> None:
        """Prompt `row` is done (EOS or max_new_tokens)."""

    def forget(self, row: int) -> None:
        """Drop what is kept of ended row `row`. A server calls it as each request ends (its stream
        of requests never ends); generate() keeps it, for inspection after the call."""


_ARMS = 'arms must be an Arm (e.g. Arm("ngram", 4)), a policy (an ArmPolicy), or a list of Arms, one per prompt'


def _not_an_arm(value, where: str = "got") -> TypeError:
    """The one-line error for `value` given where an Arm belongs, with the fix when it is guessable."""
    kind = "None" if value is None else f"a {type(value).__name__}"
    hint = ""
    if isinstance(value, str):
        hint = f": for {value!r} use Arm.parse({value!r})" if "@" in value else f": e.g. Arm({value!r}, 4)"
    elif isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        hint = f": use Arm{value!r}"
    return TypeError(f"{_ARMS}; {where} {kind}{hint}")


class FixedArms(ArmPolicy):
    """Row i always plays arms[i] (one arm for every row if a single Arm is given)."""
    def __init__(self, arms: Arm | Sequence[Arm], n_rows: int):
        if isinstance(arms, tuple) and len(arms) == 2 and isinstance(arms[0], str) and not isinstance(arms[1], Arm):
            raise _not_an_arm(arms)                     # ("ngram", 4): an arm written as a tuple
        if not isinstance(arms, Arm) and (isinstance(arms, (str, bytes, dict)) or not hasattr(arms, "__iter__")):
            raise _not_an_arm(arms)
        self.one = arms if isinstance(arms, Arm) else None       # one arm for every row, however many come
        arms = [arms] * max(n_rows, 1) if isinstance(arms, Arm) else list(arms)
        bad = next((i for i, a in enumerate(arms) if not isinstance(a, Arm)), None)
        if bad is not None:
            raise _not_an_arm(arms[bad], f"arms[{bad}] is")
        if self.one is None and len(arms) != n_rows:
            raise ValueError(f"got {len(arms)} arms for {n_rows} prompts; pass one Arm or one per prompt")
        self.arms = arms

    def select(self, rows: list[int]) -> list[Arm]:
        return [self.one] * len(rows) if self.one is not None else [self.arms[r] for r in rows]
