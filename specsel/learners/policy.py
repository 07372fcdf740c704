"""Online arm selection in the engine: learners fed through the same FeedbackRouter as replay.

    policy = LearnerPolicy("hedgespec", [Arm("ngram", 4), Arm("early_exit", 2)])
    engine.generate(prompts, policy)        # feedback="full": the learner's mode (HedgeSpec needs it)

`drafters` (optional) fixes the order of the drafters the learner scores (default: the arms'
drafters, in the order they first appear); every arm's drafter must be among them.

Per-query learners are the default (Not-a-Bandit competes with the best arm per query);
`shared=True` plays one learner per batch, one arm for every row (BanditSpec's code).

Queries are numbered across generate() calls (the r-th prompt this policy has seen is query r);
a per-query learner is seeded with `specsel.core.seeds.query_seed(seed, r)`, so offline replay
(`specsel.replay.simulate.simulate`) can rebuild exactly the same learner.

Lazy scoring (`lazy_scoring`, on by default for a full-information learner with the
throughput objective, where scoring time counts: an EAGLE or LoRA drafter's score is a head
forward over the committed tokens). Each scoring window scores, per active row, the
`lazy_drafters` drafters holding the most weight in that row's learner (default 1: its
favourite; None: every drafter with an arm of positive weight), plus the drafters played.
A HedgeSpec arm whose regret is <= 0 has weight 0 and would not be played anyway. The others
sleep: their arms get no loss for those positions, so their regret only decays (sleeping
experts, Freund et al. 1997). The played drafter's arms at every gamma are scored, so the
speculation length is always learned with full information. A row playing the autoregressive
arm asks for no scores (speculation does not pay there; scoring would). Every `refresh_every`-th window
of a batch, the first included, scores every drafter, so a sleeping drafter that turns good
can still win weight back (counting per batch keeps a resumed study identical to an
uninterrupted one). A row that joins a running batch (continuous batching, a server) gets a
refresh window `refresh_every // 4` windows after the last at the latest: otherwise a request
joining a long-running batch that decodes plainly would decode plainly on the stream's prior
alone until the next (idle, so rarer) refresh, and the prior would learn nothing from it. With
the length objective the scores cost no accepted tokens, and every drafter is scored every window.

Router priors (`priors`, a function of the query number): each per-query learner is built with
the prior over the arms that a prompt router gave its query (specsel.learners.routed).

Batch-aware cost (`batch_cost`, on by default; throughput objective, per-query learners): a
row's arms are costed in the round its batch played, as the batch's throughput had the row
played each arm and the other rows what they played (specsel.core.costs.BatchRound, design
eq. 18). A row that alone widens the verify window, or alone calls a drafter, pays for it; the
autoregressive arm pays nothing beyond the round the others force. Drafters that draft in one
call (a family, `draft_calls`) are one call: a row joining another row's expert of the same
head pays only the steps its draft adds. A shared learner plays one arm for every row, so its
rows are costed alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from specsel.core.arms import Arm, arm_pairs, validate_arms
from specsel.core.costs import BatchRound, RelativeCostModel
from specsel.core.policy import ArmPolicy
from specsel.core.records import RoundInfo
from specsel.core.seeds import query_seed
from specsel.learners import make_learner
from specsel.learners.feedback import FeedbackRouter

OBJECTIVES = ("length", "throughput")
# lazy scoring: every drafter is scored in every 8th window (8 beat 4 in one ad hoc run on tuning queries)
DEFAULT_REFRESH = 8
DEFAULT_LAZY_DRAFTERS = 1   # in between, each row's favourite: 1.01x the best fixed arm vs 0.99x scoring every
                            # weighted drafter (recipes/bench_joint.py on the tuning queries, README); 2: 0.96x ad hoc


def _drafters_of(arms: list[Arm], drafters: Sequence[str] | None) -> list[str]:
    """The drafters a learner scores: `drafters`, or the arms' drafters in first-seen order; a
    one-line ValueError for an arm whose drafter is not among the given ones."""
    bad = next((i for i, a in enumerate(arms) if not isinstance(a, Arm)), None)
    if bad is not None:
        raise TypeError(f"arms[{bad}] is a {type(arms[bad]).__name__}, not an Arm: e.g. Arm('ngram', 4)")
    if drafters is None:
        return list(dict.fromkeys(a.drafter for a in arms if a.drafter is not None))
    if isinstance(drafters, str):
        raise TypeError(f"drafters must be a list of drafter names (got the str {drafters!r}): e.g. [{drafters!r}]")
    drafters = list(drafters)
    given = ", ".join(drafters) or "none"
    validate_arms(arms, drafters, where=f", not in the drafters given to LearnerPolicy ({given}): add it, or leave "
                  "drafters out (default: the arms' drafters)")
    return drafters


@dataclass
class PolicyOptions:
    """LearnerPolicy's options (module docstring): one learner per batch (`shared`), the seed of the
    per-query learners, lazy scoring and its refresh interval and width, the batch-aware cost, the
    pool's draft calls (specsel.core.drafting.draft_calls) and the router priors (query -> prior)."""
    shared: bool = False
    seed: int = 0
    lazy_scoring: bool | None = None
    refresh_every: int = DEFAULT_REFRESH
    lazy_drafters: int | None = DEFAULT_LAZY_DRAFTERS
    batch_cost: bool = True
    draft_calls: dict[str, str] | None = None
    priors: Callable | None = None


class LearnerPolicy(ArmPolicy):
    def __init__(self, learner: str, arms: Sequence[Arm], drafters: Sequence[str] | None = None,
                 objective: str = "length", **options):
        """`options`: PolicyOptions' fields (shared, seed, lazy_scoring, refresh_every, lazy_drafters,
        batch_cost, draft_calls, priors); any other keyword goes to the learner (e.g. discount=0.5)."""
        mine = {k: options.pop(k) for k in list(options) if k in PolicyOptions.__dataclass_fields__}
        o, learner_kw = PolicyOptions(**mine), options
        shared, seed, lazy_scoring, refresh_every = o.shared, o.seed, o.lazy_scoring, o.refresh_every
        lazy_drafters, batch_cost, draft_calls, priors = o.lazy_drafters, o.batch_cost, o.draft_calls, o.priors
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)} (got {objective!r})")
        if lazy_drafters is not None and (not isinstance(lazy_drafters, int) or lazy_drafters < 1):
            raise ValueError(f"lazy_drafters must be an integer >= 1 or None (got {lazy_drafters!r}); None scores "
                             "every drafter a learner still weighs")
        if not isinstance(refresh_every, int) or refresh_every < 1:
            raise ValueError(f"refresh_every must be an integer >= 1 (got {refresh_every!r}); 1 scores every drafter "
                             "every window")
        self.arms = list(arms)
        if not self.arms:
            raise ValueError("a learner needs at least one arm")
        self.drafters = _drafters_of(self.arms, drafters)
        self.name, self.objective, self.shared, self.seed = learner, objective, shared, seed
        self.learner_kw = learner_kw
        self.priors = priors        # query number -> a prior over self.arms (router learners), or None
        self.pairs = arm_pairs(self.arms, self.drafters)
        L = max(a.gamma for a in self.arms)
        self.reward_range = (0.0, L + 1.0) if objective == "throughput" else (1.0, L + 1.0)
        self.cost = RelativeCostModel(max(len(self.drafters), 1), L, calls=self._call_indices(draft_calls)) \
            if objective == "throughput" else None
        self.batch_cost = bool(batch_cost) and self.cost is not None and not shared
        probe = self._new_learner(0)
        self.needs_full_information = probe.full_information
        self.lazy_scoring = (objective == "throughput") if lazy_scoring is None else bool(lazy_scoring)
        self.lazy_scoring = self.lazy_scoring and probe.full_information and probe.has_weights
        self.refresh_every, self.windows, self.last_refresh = refresh_every, 0, 0
        self.join_gap = max(1, refresh_every // 4)
        self.refreshed: set[int] = set()        # rows that have had a refresh window
        self.lazy_drafters = lazy_drafters
        self.finished: set[int] = set()
        self.routers: dict[int, FeedbackRouter] = {}
        self.played: dict[int, int] = {}
        self._shared = probe if shared else None
        self.query_base, self.queries_seen = 0, 0

    def _call_indices(self, draft_calls: dict[str, str] | None) -> list[int] | None:
        """Each drafter's draft call as an index (specsel.core.drafting.draft_calls: drafters
        of one family draft in one call, and a batch pays that call once)."""
        if not self.drafters or draft_calls is None:
            return None
        missing = [d for d in self.drafters if d not in draft_calls]
        if missing:
            raise ValueError(f"draft_calls has no call for {', '.join(missing)}: build it with "
                             "specsel.core.drafting.draft_calls(pool) from the engine's pool")
        labels = [draft_calls[d] for d in self.drafters]
        return [labels.index(label) for label in labels]

    def seek(self, query: int) -> None:
        """Number the next batch's first row as query `query` of the stream (per-query learners
        are seeded by it), e.g. to replay or resume a stream from its middle."""
        if query < 0:
            raise ValueError(f"query index must be >= 0 (got {query})")
        self.queries_seen = int(query)

    def restore(self, batches) -> None:
        """A throughput policy's step-cost model re-learns the rounds of batches it decoded before, in
        the order it saw them live (round by round, rows in order), so a resumed run plays on."""
        if self.cost is None:
            return
        for queries in batches:
            for records in _rounds(r for query in queries for r in query):
                self.cost.observe_round(records, self.drafters)

    def start(self, n_rows: int) -> None:
        """New batch: rows 0..n_rows-1 are new queries (a shared learner carries over)."""
        self.query_base, self.queries_seen = self.queries_seen, self.queries_seen + n_rows
        self.routers, self.played, self.finished, self.windows, self.last_refresh = {}, {}, set(), 0, 0
        self.refreshed = set()

    def _new_learner(self, query: int):
        """The learner of query `query` (stream position): seeded by it, with its prior if any."""
        kw = self.learner_kw if self.priors is None else {**self.learner_kw, "prior": self.priors(query)}
        return make_learner(self.name, len(self.arms), reward_range=self.reward_range,
                            seed=query_seed(self.seed, query), **kw)

    def _router(self, row: int) -> FeedbackRouter:
        if row not in self.routers:
            learner = self._shared if self.shared else self._new_learner(self.query_base + row)
            self.routers[row] = FeedbackRouter(learner, self.pairs, self.cost)
        return self.routers[row]

    def select(self, rows: list[int]) -> list[Arm]:
        if self.shared:
            for r in rows:
                self._router(r)
            choice = int(self._shared.select())
            self.played.update({r: choice for r in rows})
        else:
            for r in rows:
                self.played[r] = int(self._router(r).learner.select())
        return [self.arms[self.played[r]] for r in rows]

    def scored_drafters(self) -> list[str]:
        """The drafters of this policy's arms; with lazy scoring (module docstring) only each
        active row's `lazy_drafters` most weighted ones and the played ones, except in a refresh window."""
        mine = [d for d in self.drafters if any(a.drafter == d for a in self.arms)]
        if not self.lazy_scoring:
            return mine
        live = [r for r in self.routers if r not in self.finished]
        if self._refresh_due(live):
            return mine
        # a row decoding autoregressively wants no scores until the next refresh window
        active = [r for r in live if r in self.played and not self.playing(r).is_autoregressive]
        wanted = self.wanted_between_refreshes(active)
        return [d for d in self.drafters if d in wanted]

    def _refresh_due(self, live: list[int]) -> bool:
        """Count a scoring window; True for a refresh window: the first of the batch, then every
        refresh_interval(live)-th, and sooner (refresh_every // 4 windows after the last) when a row
        has joined since the last one."""
        self.windows += 1
        if not live:
            return True
        since = self.windows - self.last_refresh
        joined = any(r not in self.refreshed for r in live)
        if self.windows == 1 or since >= self.refresh_interval(live) or (joined and since >= self.join_gap):
            self.last_refresh = self.windows
            self.refreshed.update(live)
            return True
        return False

    def refresh_interval(self, live: list[int]) -> int:
        return self.refresh_every

    def wanted_between_refreshes(self, active: list[int]) -> set[str]:
        """Each active row's `lazy_drafters` most weighted drafters, and the drafters played."""
        learners = {id(self.routers[r].learner): self.routers[r].learner for r in active}
        wanted = set()
        for learner in learners.values():
            w = np.asarray(learner.weights(), dtype=float)
            per_drafter = {}
            for i in np.flatnonzero(w > 0):
                d = self.arms[i].drafter
                if d is not None:                      # the autoregressive arm has nothing to score
                    per_drafter[d] = per_drafter.get(d, 0.0) + w[i]
            ranked = sorted(per_drafter, key=per_drafter.get, reverse=True)
            wanted.update(ranked if self.lazy_drafters is None else ranked[:self.lazy_drafters])
        return wanted | {self.playing(r).drafter for r in active}

    def playing(self, row: int) -> Arm:
        """The arm `row` played last."""
        return self.arms[self.played[row]]

    def timed(self, info: RoundInfo) -> None:
        """The step-cost model learns a round's timings as soon as it is verified, not a scoring
        window later: a width tried once is known from the next round on."""
        if self.cost is not None and info.records:
            self.cost.observe_round(info.records, self.drafters)

    def observe(self, info: RoundInfo) -> None:
        in_batch = self.batch_cost and len(info.records) > 1
        for r in info.records:
            gammas = self.heard_acceptance(r)
            batch = BatchRound.of(r.row, info.records, self.drafters) if in_batch else None
            self.routers[r.row].on_round(self.played[r.row], r.committed, gammas, batch)
            self.heard(r.row, gammas, batch)

    def heard_acceptance(self, record) -> np.ndarray | None:
        """[n_drafters, committed] acceptance of a record as the learner hears it (acceptance_of);
        a drafter that was not scored is nan (asleep); None under bandit feedback."""
        acceptance = self.acceptance_of(record)
        if acceptance is None:
            return None
        missing = [float("nan")] * record.committed
        return np.array([acceptance.get(d, missing) for d in self.drafters], dtype=float)

    def heard(self, row: int, gammas: np.ndarray | None, batch: BatchRound | None) -> None:
        """A row's round reached its learner: `gammas` [n_drafters, committed] (nan: not scored;
        None: bandit feedback) and `batch`, its round's other rows (None: costed alone)."""

    def acceptance_of(self, record) -> dict | None:
        """Each drafter's acceptance at the record's committed positions, as the learner hears it."""
        return record.position_acceptance

    def finish(self, row: int) -> None:
        self.routers[row].flush()
        self.finished.add(row)

    def forget(self, row: int) -> None:
        self.routers.pop(row, None)
        self.played.pop(row, None)
        self.finished.discard(row)
        self.refreshed.discard(row)


def _rounds(records) -> list[list]:
    """Records grouped by the round they were verified in, in order, rows in order: by the round's
    end time (`time_s`; rows joining a running batch count their rounds from 0), else by the round
    number (rows of a fixed batch step together)."""
    records = list(records)
    key = (lambda r: r.time_s) if records and all(r.time_s is not None for r in records) else (lambda r: r.round)
    groups: dict = {}
    for r in sorted(records, key=lambda r: (key(r), r.row)):
        groups.setdefault(key(r), []).append(r)
    return list(groups.values())
