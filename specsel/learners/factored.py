"""The joint setting, factored: HedgeSpec picks the drafter, its expected throughput picks gamma.

    policy = FactoredHedge(drafters=["ngram", "eagle"], gammas=[1, 2, 4])
    engine.generate(prompts, policy, feedback="full")

Per query, a HedgeSpec learner over the drafters learns from every drafter's acceptance at every
committed position (loss ``1 - gamma_s(j)``, docs/design.md eq. 11: the drafter setting's
learner, fed without delay). Each round, the row plays the drafter ``j`` of largest weight, at
the speculation length -- 0, the autoregressive arm, included -- of highest batch throughput
(eq. 18) for its expected length under the row's recent acceptance ``alpha_j`` (eq. 19)::

    alpha_j = sum_s m^(n-1-s) gamma_s(j) / sum_s m^(n-1-s)      (the row's last positions weigh most)
    E[A(g)] = 1 + alpha + ... + alpha^g
    g* = argmax_{g in gammas + {0}} (E[A(g)] + S) / (B * T((j, g) | the others' last round))

In a batch, the rows' choices are then weighed together (eq. 20): the batch caps every row's
length at the G in gammas + {0} of most expected tokens per second,
sum_r E[A_r(min(g_r, G))] / T(the round so capped). A row alone cannot see this: inside a batch
drafting 4, its own 4 costs nothing more, and its autoregressive arm saves nothing. At G = 0 every
row decodes autoregressively and, playing the autoregressive arm, asks for no scores until the
next refresh.

Before a row's first feedback on drafter j, alpha_j is the stream's acceptance of j over the
queries that have finished (eq. 22), so on a stream where speculation does not pay, later
batches start autoregressive. A position at which nothing was scored (the row decoded
plainly, between refreshes) counts as a typical position of the stream (eq. 23): alpha
drifts back to the stream's acceptance, so a row that stopped speculating after a few
rejections tries again where the stream says drafting pays, and stays plain where it does
not. Before any query has finished, the row decodes autoregressively until its first scores
arrive (a window later): it measures the plain forward, and the first window scores every
drafter whatever is played.

A learner over drafter x gamma arms gets each arm's throughput only ``g`` positions late and must
tell apart arms that differ in cost alone; here the drafter is learned from immediate feedback
and the length follows from the cost model, so one learner serves every gamma. Lazy scoring
works as for LearnerPolicy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from specsel.core.arms import Arm
from specsel.core.costs import BatchRound
from specsel.learners.feedback import FeedbackRouter
from specsel.learners.policy import LearnerPolicy

DEFAULT_MEMORY = 0.8    # per position; about the last five positions count
DEFAULT_IDLE_BACKOFF = 4    # refresh windows 4x rarer while every row decodes autoregressively
DEFAULT_REFRESH = 16        # every drafter scored every 16th window (the runner-up is scored in every window)
# these three defaults were set by reasoning, not tuned: no held-out or tuning query chose them


@dataclass
class FactoredOptions:
    """FactoredHedge's own options (module docstring): the acceptance memory m per position (eq. 19),
    the autoregressive arm, self-scoring (eq. 21), the idle refresh backoff, the stream prior (eq.
    22), the batch caps (eq. 20), eq. 23, and the drafter learner (hedgespec, or router_hedgespec)."""
    memory: float = DEFAULT_MEMORY
    autoregressive: bool = True
    self_scoring: bool = True
    idle_backoff: int = DEFAULT_IDLE_BACKOFF
    stream_prior: bool = True
    batch_caps: bool = True
    idle_prior: bool = True
    learner: str = "hedgespec"


class FactoredHedge(LearnerPolicy):
    def __init__(self, drafters: Sequence[str], gammas: Sequence[int], seed: int = 0, **options):
        """`options`: FactoredOptions' fields; the others are LearnerPolicy's (PolicyOptions)."""
        o = FactoredOptions(**{k: options.pop(k) for k in list(options) if k in FactoredOptions.__dataclass_fields__})
        policy_kw = options
        memory, autoregressive, self_scoring, idle_backoff = o.memory, o.autoregressive, o.self_scoring, o.idle_backoff
        stream_prior, batch_caps, idle_prior, learner = o.stream_prior, o.batch_caps, o.idle_prior, o.learner
        if not drafters:
            raise ValueError("FactoredHedge needs at least one drafter")
        if not 0.0 < memory <= 1.0:
            raise ValueError(f"memory must lie in (0, 1] (got {memory}); 1 weighs every position alike")
        if policy_kw.get("shared"):
            raise ValueError("FactoredHedge learns per query; use LearnerPolicy(shared=True) for one learner per batch")
        self.gammas = sorted({int(g) for g in gammas} | ({0} if autoregressive else set()))
        if not self.gammas or self.gammas[-1] < 1:
            raise ValueError(f"gammas must hold a length >= 1 (got {list(gammas)})")
        policy_kw.setdefault("refresh_every", DEFAULT_REFRESH)
        super().__init__(learner, [Arm(d, self.gammas[-1]) for d in drafters], drafters, objective="throughput",
                         seed=seed, loss="acceptance", **policy_kw)
        self.memory = float(memory)
        self.self_scoring = bool(self_scoring)
        if not isinstance(idle_backoff, int) or idle_backoff < 1:
            raise ValueError(f"idle_backoff must be an integer >= 1 (got {idle_backoff!r}); 1 refreshes as often "
                             "while the batch decodes autoregressively")
        self.idle_backoff = idle_backoff
        self._gamma_arr = np.array(self.gammas)
        self.stream_prior = bool(stream_prior)
        self.batch_caps = bool(batch_caps)              # False: eq. 20 weighs only all-autoregressive
        self.idle_prior = bool(idle_prior)              # False: unscored positions leave alpha as it is
        n = len(self.drafters)
        self.stream_accepted, self.stream_positions = np.zeros(n), np.zeros(n)   # eq. 22, over finished queries

    def start(self, n_rows: int) -> None:
        super().start(n_rows)
        self.accepted: dict[int, np.ndarray] = {}    # row -> discounted acceptance sum per drafter
        self.weight: dict[int, np.ndarray] = {}      # row -> discounted position count per drafter
        self.last_round: dict[int, BatchRound | None] = {}
        self.chosen: dict[int, Arm] = {}             # row -> the arm it played last
        self.row_heard: dict[int, np.ndarray] = {}   # row -> [known acceptance sum, known positions] per drafter

    def _router(self, row: int) -> FeedbackRouter:
        if row not in self.routers:        # acceptance loss: no cost in the learner (the cost picks gamma)
            self.routers[row] = FeedbackRouter(self._new_learner(self.query_base + row), self.pairs)
        return self.routers[row]

    def finish(self, row: int) -> None:
        super().finish(row)
        self._join_stream(self.row_heard.pop(row, None))

    def forget(self, row: int) -> None:
        super().forget(row)
        for per_row in (self.accepted, self.weight, self.last_round, self.chosen):
            per_row.pop(row, None)

    def restore(self, batches) -> None:
        """The step-cost model re-learns the stored rounds (LearnerPolicy.restore) and every stored
        query joins the stream prior (eq. 22) in stream order, as `heard` and `finish` did live."""
        super().restore(batches)
        for queries in batches:
            for records in queries:
                self.remember(records)

    def remember(self, records) -> None:
        """Fold one finished query into the stream prior (eq. 22) from its RoundRecords in order."""
        if not self.stream_prior:
            return
        heard = np.zeros((2, len(self.drafters)))
        for record in records:
            heard += self._known(self.heard_acceptance(record))
        self._join_stream(heard)

    def _join_stream(self, heard: np.ndarray | None) -> None:
        """eq. 22: a finished query's [known acceptance sum, known positions] per drafter join the stream's."""
        if heard is not None:
            self.stream_accepted += heard[0]
            self.stream_positions += heard[1]

    def _known(self, gammas: np.ndarray | None) -> np.ndarray:
        """[known acceptance sum, known positions] per drafter of one round (gammas: nan = unknown)."""
        if gammas is None:
            return np.zeros((2, len(self.drafters)))
        known = ~np.isnan(gammas)
        return np.stack([np.where(known, gammas, 0.0).sum(1), known.sum(1)])

    def _stream_acceptance(self) -> np.ndarray:
        """eq. 22: each drafter's acceptance over the stream's finished queries (nan before any,
        and always without the stream prior)."""
        known = self.stream_positions > 0 if self.stream_prior else np.zeros(len(self.drafters), dtype=bool)
        return np.where(known, self.stream_accepted / np.where(known, self.stream_positions, 1.0), np.nan)

    def _prior(self, j: int) -> float | None:
        """eq. 22: drafter j's acceptance over the stream's finished queries (None before any)."""
        alpha = self._stream_acceptance()[j]
        return None if np.isnan(alpha) else float(alpha)

    def select(self, rows: list[int]) -> list[Arm]:
        alphas = {}
        for r in rows:
            j = self.played[r] = int(self._router(r).learner.select())
            self.chosen[r], alphas[r] = self._length(r, j)
        if len(rows) > 1:
            cap = self._batch_cap(rows, alphas)
            for r in rows:
                a = self.chosen[r]
                if a.gamma > cap:
                    self.chosen[r] = Arm.autoregressive() if cap == 0 else Arm(a.drafter, cap)
        return [self.chosen[r] for r in rows]

    def _batch_cap(self, rows: list[int], alphas: dict[int, float | None]) -> int:
        """eq. 20: the longest draft the batch allows this round. Each row's length is a best
        response to the others' last round (eq. 19): inside a batch whose window is 4 wide, a
        row's own 4 costs nothing more, so every row may keep drafting 4 where all drafting 2,
        or none drafting, gives the batch more tokens per second. Over every cap G (0: all
        rows autoregressive), each row plays min(g_r, G); the batch takes the cap of most
        expected tokens per second, the longest among equals."""
        best, best_rate = self.gammas[-1], -1.0
        caps = self.gammas if self.batch_caps else [g for g in self.gammas if g in (0, self.gammas[-1])]
        for cap in reversed(caps):
            total, longest, width = 0.0, {}, 0
            for r in rows:
                a = self.chosen[r]
                g = min(a.gamma, cap)
                total += _expected_length(alphas[r], g)
                if g > 0:
                    j = self.drafters.index(a.drafter)
                    longest[j], width = max(longest.get(j, 0), g), max(width, g)
            # the round with these drafts = the autoregressive arm's cost beside them (eq. 18's T)
            plan = BatchRound(len(rows), 0, width, tuple(sorted(longest.items())))
            rate = total / float(self.cost.seconds(np.array([0]), np.array([0]), plan)[0])
            if rate > best_rate:
                best, best_rate = cap, rate
        return best

    def playing(self, row: int) -> Arm:
        return self.chosen[row]

    def _length(self, row: int, j: int) -> tuple[Arm, float | None]:
        """eq. 19: the length of best expected batch throughput for drafter j on this row, and
        the acceptance it assumed (None: nothing known, `_cold_start`)."""
        weight = self.weight.get(row)
        if weight is None or weight[j] == 0:         # no feedback yet: the stream's prior
            alpha = self._prior(j)
            if alpha is None:
                return self._cold_start(j)
            alpha = min(alpha, 1.0 - 1e-9)
        else:
            alpha = min(self.accepted[row][j] / weight[j], 1.0 - 1e-9)
        g = self._gamma_arr
        expected = _expected_length(alpha, g)
        batch = self.last_round.get(row)
        rewards = self.cost.throughput(expected, np.full(len(g), j), g, batch)
        k = int(np.argmax(rewards))
        return (Arm.autoregressive() if g[k] == 0 else Arm(self.drafters[j], int(g[k]))), alpha

    def _cold_start(self, j: int) -> tuple[Arm, None]:
        """Nothing known of drafter j, not even from the stream (eq. 22): decode autoregressively
        until the first scores come in, and measure the plain forward, the unit of every cost;
        the first window scores every drafter either way. Without the autoregressive arm: the
        longest draft."""
        if self.gammas[0] == 0:
            return Arm.autoregressive(), None
        return Arm(self.drafters[j], self.gammas[-1]), None

    def acceptance_of(self, record) -> dict | None:
        """The scored drafters' acceptance, and the played drafter's from its own draft (eq. 21):
        1 at each accepted draft position, 0 where its draft was rejected, unknown (nan) at the
        bonus position after a fully accepted draft. Exact for greedy drafters whose chain equals
        their teacher-forced predictions; an EAGLE head's chain is its own (what it really does)."""
        scored = record.position_acceptance
        if scored is None or not self.self_scoring or record.drafter is None or record.drafter in scored:
            return scored
        a = record.accepted
        own = [1.0] * a + [0.0 if a < record.drafted else float("nan")]
        own += [float("nan")] * max(record.committed - len(own), 0)
        return {**scored, record.drafter: own[:record.committed]}

    def refresh_interval(self, live: list[int]) -> int:
        """A batch decoding autoregressively refreshes idle_backoff times less often: its scores buy nothing now."""
        idle = all(r in self.chosen and self.chosen[r].is_autoregressive for r in live)
        return self.refresh_every * (self.idle_backoff if idle else 1)

    def wanted_between_refreshes(self, active: list[int]) -> set[str]:
        """With self-scoring, the played drafter scores itself: each row asks for its runner-up
        drafter (the one of most weight after the played one), so HedgeSpec compares two
        drafters every round for the price of scoring one."""
        if not self.self_scoring:
            return super().wanted_between_refreshes(active)
        wanted = set()
        for r in active:
            w = np.array(self.routers[r].learner.weights(), dtype=float)
            w[self.played[r]] = -1.0
            wanted.add(self.drafters[int(np.argmax(w))])
        return wanted

    def heard(self, row: int, gammas: np.ndarray | None, batch: BatchRound | None) -> None:
        """Keep the row's round (eq. 19's others) and fold its acceptance into alpha (eq. 19)."""
        self.last_round[row] = batch
        if self.stream_prior:
            self.row_heard[row] = self.row_heard.get(row, 0.0) + self._known(gammas)
        if gammas is None:
            return
        n = len(self.drafters)
        acc = self.accepted.setdefault(row, np.zeros(n))
        wt = self.weight.setdefault(row, np.zeros(n))
        typical = self._stream_acceptance() if self.idle_prior else None
        for column in gammas.T:                   # position by position
            known = ~np.isnan(column)             # asleep drafters keep their estimate
            if typical is not None and not known.any():
                # eq. 23: nobody was scored here (the row decoded plainly): a typical position of the stream
                column, known = typical, ~np.isnan(typical)
            acc[known] = self.memory * acc[known] + column[known]
            wt[known] = self.memory * wt[known] + 1.0


def _expected_length(alpha: float | None, g):
    """eq. 19's E[A(g)] = 1 + alpha + ... + alpha^g (alpha < 1); None, nothing known: g + 1."""
    if alpha is None:
        return g + 1.0
    return (1.0 - alpha ** (g + 1)) / (1.0 - alpha)
