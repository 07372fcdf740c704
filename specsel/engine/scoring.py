"""Feedback after a round: which drafters catch up, and what the policy hears.

`BanditFeedback` (generate(feedback="bandit")): only the played drafters catch up (and those
that must sync every round); the policy observes each round at once.

`FullInformation` (generate(feedback="full")): every drafter the policy wants scored catches
up on every row and reports its prediction at each committed position, which becomes its
acceptance there (docs/design.md, "The round", step 5, eq. 4). Three refinements live here and
nowhere else:

* scoring windows: the policy names the drafters it wants (`ArmPolicy.scored_drafters`,
  lazy scoring) at the start of each window; the others run as with bandit feedback;
* deferred scoring (greedy, `score_every=k`): drafters with `deferred_scoring` score the
  committed positions of up to k rounds in one call, and the policy hears of those rounds
  then (delayed feedback);
* the acceptance of each committed position, from the round's own verify distribution.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from specsel.core.drafting import NOT_SCORED, DraftContext, Drafter, DrafterError, Predictions, Scorer, ScoringWindow
from specsel.core.policy import ArmPolicy
from specsel.core.records import RoundInfo


class BanditFeedback:
    """Only the played drafters catch up; the policy learns of each round at once."""
    full = False

    def __init__(self, drafters: dict[str, Drafter], policy: ArmPolicy):
        self.drafters, self.policy = drafters, policy

    def capture_layers(self) -> set[int]:
        """Target hidden states this feedback needs from each verify forward (besides drafting's)."""
        return set()

    def initial_window(self) -> ScoringWindow | None:
        return NOT_SCORED

    def open_window(self, ctx: DraftContext) -> None:
        """Called before each round's drafting."""

    def catch_up(self, ctx: DraftContext, groups: dict[str, torch.Tensor], p: torch.Tensor | None,
                 m: torch.Tensor, m_host: list[int]) -> dict[str, list[list[float]]] | None:
        """Step 5: drafters catch up on the committed tokens (`m` per row, on the device and the host);
        returns each scored drafter's acceptance at every committed position of every row (None:
        nobody is scored)."""
        all_rows = torch.arange(len(m), device=m.device)
        for name, d in self.drafters.items():
            _sync(d, ctx, name, groups, all_rows)
        return None

    def deliver(self, ctx: DraftContext, info: RoundInfo, m: torch.Tensor, finishing: bool) -> None:
        """Step 6: the policy observes the round."""
        self.policy.observe(info)

    def settle(self, ctx: DraftContext | None) -> None:
        """Rows are about to join the batch: nothing may be left pending on the old rows."""


def _sync(d: Drafter, ctx: DraftContext, name: str, groups: dict[str, torch.Tensor], all_rows: torch.Tensor) -> None:
    """Catch-up without scoring: every row for drafters that sync every round, else the rows it drafted for."""
    if d.capabilities.syncs_every_round:
        d.commit(ctx, all_rows)
    elif name in groups:
        d.commit(ctx, groups[name])


@dataclass
class _PendingRound:
    """A round awaiting deferred scores: what the policy will observe, and where it committed."""
    info: RoundInfo
    prev_lens: torch.Tensor     # [n] committed length before the round
    m: list[int]                # [n] tokens committed in the round


class FullInformation(BanditFeedback):
    """Every wanted drafter scores every committed position of every row."""
    full = True

    def __init__(self, drafters: dict[str, Drafter], policy: ArmPolicy, greedy: bool, score_every: int):
        super().__init__(drafters, policy)
        missing = [name for name, d in drafters.items() if not isinstance(d, Scorer)]
        if missing:
            raise DrafterError(f"feedback='full' needs drafters that score committed positions (the Scorer protocol); "
                               f"{', '.join(missing)} cannot: use feedback='bandit' or leave them out of the pool")
        self.deferred = [name for name, d in drafters.items() if d.capabilities.deferred_scoring] \
            if greedy and score_every > 1 else []
        self.score_every = score_every
        self.pending: list[_PendingRound] = []       # rounds whose deferred scores are not in yet

    def capture_layers(self) -> set[int]:
        return {k for d in self.drafters.values() for k in d.capabilities.scoring_layers}

    def initial_window(self) -> ScoringWindow | None:
        return None

    def open_window(self, ctx: DraftContext) -> None:
        """A scoring window starts when no round awaits scores: whose acceptance is wanted."""
        if self.pending:
            return
        wanted = self.policy.scored_drafters()
        ctx.scoring = ScoringWindow(frozenset(self.drafters if wanted is None else wanted),
                                    ctx.seq_lens.clone())     # earlier positions are scored already

    def catch_up(self, ctx, groups, p, m, m_host):
        predictions: dict[str, Predictions] = {}
        all_rows = torch.arange(len(m), device=m.device)
        for name, d in self.drafters.items():
            if not ctx.keeps_scores(name):             # not wanted in this window
                _sync(d, ctx, name, groups, all_rows)
            elif name in self.deferred:
                d.commit(ctx, all_rows)                # scored when the window closes
            else:
                predictions[name] = d.score(ctx, all_rows)
        return position_acceptance(ctx, ctx.prev_lens, predictions, p, m_host)

    def deliver(self, ctx, info, m, finishing):
        if not self.deferred:
            self.policy.observe(info)
            return
        self.pending.append(_PendingRound(info, ctx.prev_lens.clone(), [r.committed for r in info.records]))
        if len(self.pending) >= self.score_every or finishing:    # before finished rows leave the batch
            self._score_pending(ctx)
            self.pending = []

    def settle(self, ctx: DraftContext | None) -> None:
        """Score the rounds still pending (deferred scoring) before rows join the batch, as when a row finishes."""
        if self.pending and ctx is not None:
            self._score_pending(ctx)
            self.pending = []

    def _score_pending(self, ctx: DraftContext) -> None:
        """Score the pending rounds with the deferred drafters (one call each), complete those
        rounds' records and let the policy observe them, oldest first."""
        deferred = [d for d in self.deferred if ctx.keeps_scores(d)]
        all_rows = torch.arange(len(ctx.seq_lens), device=ctx.seqs.device)
        since = self.pending[0].prev_lens
        scores = {name: self.drafters[name].score_since(ctx, all_rows, since) for name in deferred}
        order = [name for name in self.drafters if ctx.keeps_scores(name)]
        for pr in self.pending:
            # this round's positions prev_lens .. prev_lens+m-1 are columns prev_lens-since+c of the scores
            cols = (pr.prev_lens - since)[:, None] + torch.arange(max(pr.m), device=since.device)[None, :]
            preds = {name: Predictions(sc.tokens.gather(1, cols.clamp_max(sc.tokens.shape[1] - 1)))
                     for name, sc in scores.items()}
            acc = position_acceptance(ctx, pr.prev_lens, preds, None, pr.m)
            for i, rec in enumerate(pr.info.records):
                merged = {**(rec.position_acceptance or {}), **{name: a[i] for name, a in acc.items()}}
                rec.position_acceptance = {name: merged[name] for name in order}   # pool order
            self.policy.observe(pr.info)


def position_acceptance(ctx: DraftContext, prev_lens: torch.Tensor, predictions: dict[str, Predictions],
                        p: torch.Tensor | None, m: list[int]) -> dict[str, list[list[float]]]:
    """gamma_pos[j] at each committed position (docs/design.md, "The round", step 5, eq. 4).

    greedy: 1[drafter j's teacher-forced argmax == committed token];
    sampling: sum_x min(p(x), q_j(x)) = 1 - TV(p, q_j), with p the target's warped
    distribution from this round's verify forward (no extra target pass). `m`: tokens each row
    committed (host); every drafter's acceptance comes to the host in one copy.
    """
    if not predictions:
        return {}
    M = max(m)
    cols = (prev_lens[:, None] + torch.arange(M, device=prev_lens.device)[None, :]).clamp_max(ctx.seqs.shape[1] - 1)
    committed = ctx.seqs.gather(1, cols)
    rows = []
    for pred in predictions.values():
        if p is None:
            acc = (pred.tokens[:, :M] == committed).float()
        elif pred.probs is None:        # deterministic drafter: q is one-hot at its prediction
            tok = pred.tokens[:, :M].clamp_min(0)
            acc = p[:, :M].gather(2, tok[:, :, None]).squeeze(2) * (pred.tokens[:, :M] >= 0)
        else:
            acc = torch.minimum(p[:, :M], pred.probs[:, :M].to(p.dtype)).sum(-1)
        rows.append(acc.float())
    host = torch.stack(rows).tolist()                                   # [drafters, n, M]
    return {name: [row[:k] for row, k in zip(table, m)] for name, table in zip(predictions, host)}
