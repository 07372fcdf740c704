"""From per-position acceptance to learner updates.

Used live by the engine and by offline replay (``specsel.replay.simulate``), so both
produce identical updates.

Terms.  An *arm* is ``(j, g)``: drafter index ``j``, speculation length ``g``.
For one query the committed token positions are ``s = 0, 1, 2, ...``.
``gamma[j][s]`` in [0, 1] is the probability that drafter ``j``'s draft token at
position ``s`` is accepted given the true prefix (``1 - TV(p, q_j)`` when
sampling; 0/1 for greedy: drafter ``j``'s argmax equals the committed token).
The expected accepted length (bonus included) of arm ``(j, g)`` started at ``s``
is (docs/design.md, "Learners", eq. 5; computed by
``specsel.core.acceptance.expected_lengths``)::

    A_s(j, g) = 1 + gamma_s + gamma_s*gamma_{s+1} + ... + prod_{k<g} gamma_{s+k}   in [1, g+1]

Update rule (docs/design.md, "Learners", eqs. 6, 8 and 14).  Bandit learners get ``update(played, Y)`` once per round,
``Y`` = tokens committed in the round.  Full-information learners get, once per
position ``s``, ``update(arm played at s, A_s[arm], all_rewards=A_s over all
arms)``.  ``A_s`` needs gammas up to ``s + G - 1`` (``G`` = largest ``g`` among
the arms), so position ``s`` waits in a queue until those positions have been
committed (delayed-feedback reduction, Joulani et al. 2013).  When a query ends
(``flush``) the positions still waiting are **dropped**: their ``A_s`` would
depend on tokens that will never exist.

Acceptance feedback.  A full-information learner that asks for it (HedgeSpec's
``loss="acceptance"``, or ``"auto"`` when every arm has the same ``g`` and there is no
cost model) instead gets ``observe_acceptance(gamma[arm drafters, s])`` for every
position ``s`` as soon as it is committed: loss ``1 - gamma`` (docs/design.md, "Learners", eq. 11), no
queue. With one ``g`` for all arms, ``A_s`` grows with every ``gamma_{s+k}``, so the
drafter accepted most often is the one of longest expected length; and feedback without
delay lets the learner follow a best drafter that changes within a query.

Cost-aware objective.  With a ``CostModel`` the reward of arm ``(j, g)`` is its
expected throughput ``A / (t_verify(g) + g * t_draft(j))`` (tokens per second)
instead of ``A`` (and ``Y / (...)`` for bandit learners).  Given the round's other rows
(``batch``, a ``BatchRound``), it is the batch's throughput had this row played the arm,
``(A + S) / (B * T(arm | others))`` (docs/design.md, eq. 18); each position is costed in the
round that committed it.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from specsel.core.acceptance import arm_arrays, expected_lengths
from specsel.core.arms import ArmPair
from specsel.core.costs import BatchRound, CostModel

__all__ = ["FeedbackRouter", "arm_arrays", "expected_lengths"]


class FeedbackRouter:
    """Feeds one learner from the rounds of one query (one router per query row;
    several routers may share one learner).  Call ``flush()`` (or
    ``reset_query()``) when the query ends, before reusing the router.
    """

    def __init__(self, learner, arms: Sequence[ArmPair], cost: CostModel | None = None):
        self.learner = learner
        self.arms = [(int(j), int(g)) for j, g in arms]
        if len(self.arms) != learner.n_arms:
            raise ValueError(f"{len(self.arms)} arms but the learner has {learner.n_arms}")
        self.arm_drafter, self.arm_gamma = arm_arrays(self.arms)
        self.n_drafters = int(self.arm_drafter.max()) + 1
        self.delay = max(int(self.arm_gamma.max()), 1)   # A_s needs positions s .. s+delay-1
        self.cost = cost
        self.acceptance = self._acceptance_feedback(learner)
        self.n_updates = 0
        self.reset_query()

    def _acceptance_feedback(self, learner) -> bool:
        loss = getattr(learner, "loss", "length") if learner.full_information else "length"
        possible = self.cost is None and len(set(self.arm_gamma.tolist())) == 1
        if loss == "acceptance" and not possible:
            raise ValueError("loss='acceptance' needs arms of one speculation length and no cost model "
                             "(it cannot rank gammas or costs); use loss='length' or 'auto'")
        return loss == "acceptance" or (loss == "auto" and possible)

    def reset_query(self) -> None:
        """Start a new query: forget queued positions (the learner is kept)."""
        self.position = 0                                   # positions committed so far
        self._next = 0                                      # first position not yet fed back
        self._buf = np.zeros((self.n_drafters, 0))          # gammas of positions _next .. position-1
        self._played = np.zeros(0, dtype=np.int64)          # arm played at those positions
        self._batch: list[BatchRound | None] = []           # the round each of them was committed in

    @property
    def pending(self) -> int:
        """Positions committed but not yet fed back (waiting for later gammas)."""
        return self.position - self._next

    def rewards(self, lengths: np.ndarray, batch: BatchRound | None = None) -> np.ndarray:
        """Rewards of all arms from their lengths ``[..., n_arms]`` (throughput with a cost
        model, in the round `batch` when given)."""
        if self.cost is None:
            return lengths
        return self.cost.throughput(lengths, self.arm_drafter, self.arm_gamma, batch)

    def on_round(self, played: int, committed: int, new_gammas: np.ndarray | None = None,
                 batch: BatchRound | None = None) -> int:
        """Record one round; returns how many learner updates it triggered.

        ``committed`` = tokens committed this round (accepted + 1, the realised
        length ``Y``); ``new_gammas`` = ``[n_drafters, committed]`` gammas of the
        positions just committed (None in bandit-feedback mode); ``batch`` = the round's
        other rows, for a batch-aware cost (None: the row is costed alone).
        """
        played, committed = int(played), int(committed)
        if committed < 1:
            raise ValueError(f"a round commits at least one token, got {committed}")
        if not self.learner.full_information:
            reward = float(committed)
            if self.cost is not None:                       # realised throughput Y / seconds
                reward = float(self.cost.throughput(reward, self.arm_drafter[played], self.arm_gamma[played], batch))
            self.learner.update(played, reward)
            self.position += committed
            self.n_updates += 1
            return 1
        if new_gammas is None:
            raise ValueError("a full-information learner needs new_gammas (feedback='full')")
        g = np.asarray(new_gammas, dtype=float)
        if g.ndim != 2 or g.shape[1] != committed or g.shape[0] < self.n_drafters:
            raise ValueError(f"new_gammas must be [n_drafters>={self.n_drafters}, committed={committed}], "
                             f"got shape {g.shape}")
        if self.acceptance:                                 # loss 1 - gamma per position, at once
            for s in range(committed):
                self.learner.observe_acceptance(g[self.arm_drafter, s])
            self.position += committed
            self._next = self.position
            self.n_updates += committed
            return committed
        self._buf = np.concatenate([self._buf, g[:self.n_drafters]], axis=1)
        self._played = np.concatenate([self._played, np.full(committed, played)])
        self._batch.extend([batch] * committed)
        self.position += committed
        ready = self.position - self.delay + 1 - self._next   # positions s with s+delay-1 < position
        if ready <= 0:
            return 0
        lengths = expected_lengths(self._buf, self.arm_drafter, self.arm_gamma, 0, ready)
        rewards = np.empty_like(lengths)
        start = 0
        while start < ready:                                # each position costed in its own round
            end = start + 1
            while end < ready and self._batch[end] is self._batch[start]:
                end += 1
            rewards[start:end] = self.rewards(lengths[start:end], self._batch[start])
            start = end
        for k in range(ready):                              # one update per position s
            arm = int(self._played[k])
            self.learner.update(arm, float(rewards[k, arm]), all_rewards=rewards[k])
        self._buf = self._buf[:, ready:]
        self._played = self._played[ready:]
        self._batch = self._batch[ready:]
        self._next += ready
        self.n_updates += ready
        return ready

    def flush(self) -> int:
        """End of query: drop the positions still waiting; returns how many."""
        dropped = self.pending
        self.reset_query()
        return dropped
