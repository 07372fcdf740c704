"""The drafter protocols (docs/design.md, "Drafters").

The engine owns the committed tokens of every row (`DraftContext.seqs`); a drafter keeps
whatever private state it needs (a KV cache, an n-gram index) and syncs it in `commit`.

`Drafter`, per round:
  propose(ctx, rows, gammas) -> Proposal   only for the rows that play this drafter
  (the engine verifies and appends the committed tokens to ctx.seqs)
  commit(ctx, rows)                        catch up on the committed tokens of `rows`: the rows
                                           it proposed for (every row if it `syncs_every_round`)
  select_rows(keep)                        the batch shrank to `keep` (finished rows left)

`Scorer`, the optional protocol for full-information feedback:
  score(ctx, rows) -> Predictions          commit() for every row, and its own teacher-forced
                                           prediction at each newly committed position
  score_since(ctx, rows, since)            greedy predictions of positions since .. seq_lens-1
                                           after commit() has seen those rounds (drafters with
                                           `deferred_scoring` only)

What a drafter needs from the engine is declared once, in its `Capabilities`.

`DrafterFamily`: drafters that share one model and its state (the LoRA experts of one EAGLE
head) name it as their `family`. The engine then starts and shrinks the family once per
batch instead of each member, and asks it for every member's drafts of a round in one call,
so rows playing different members draft in the same forwards.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from specsel.core.sampling import Sampling


class DrafterError(ValueError):
    """A drafter cannot be built or used as asked; the message names the fix."""


@dataclass(frozen=True)
class Capabilities:
    """What a drafter needs from the engine and promises to it."""
    deterministic: bool = False           # drafts never depend on randomness (q is one-hot at the draft)
    feature_layers: tuple[int, ...] = ()  # target hidden states (HF hidden_states numbering) it drafts from:
                                          # captured from every verify forward (ctx.target_hidden)
    scoring_layers: tuple[int, ...] = ()  # hidden states it scores committed positions from, captured with
                                          # full information only
    replay_exact: bool = True             # its draft chain equals its teacher-forced predictions while
                                          # accepted, so greedy replay of full-information records is exact
    syncs_every_round: bool = False       # commit() for every row every round, even with bandit feedback
                                          # (drafters that must see each round's features)
    deferred_scoring: bool = False        # implements Scorer.score_since: with greedy full information the
                                          # engine may score several rounds in one call (score_every=k)


@dataclass(frozen=True)
class ScoringWindow:
    """Which predictions at committed positions a scorer may be asked for, until the next window."""
    drafters: frozenset[str]              # the drafters that will be scored
    start: torch.Tensor | None = None     # [B] first committed position that may be asked for (None: any)

    def select_rows(self, keep: torch.Tensor) -> "ScoringWindow":
        return ScoringWindow(self.drafters, None if self.start is None else self.start[keep])


NOT_SCORED = ScoringWindow(frozenset())   # bandit feedback: nobody is scored


@dataclass
class DraftContext:
    """The engine's view of the batch, shared with drafters (rows are local batch indices)."""
    seqs: torch.Tensor          # [B, capacity] committed tokens (prompt + generated), right-padded
    seq_lens: torch.Tensor      # [B] committed length of each row
    prev_lens: torch.Tensor     # [B] committed length before the last round
    sampling: Sampling | None = None
    generator: torch.Generator | None = None
    target_hidden: dict[int, torch.Tensor] | None = None   # layer -> [B, W, H] target features of this
                                                            # round's verify window (capabilities' layers)
    round: int = 0                                          # rounds of this batch so far
    scoring: ScoringWindow | None = None                    # None: every drafter may be scored at any position

    def keeps_scores(self, name: str) -> bool:
        """Whether drafter `name` may be asked for predictions at committed positions; the
        others may skip work that only scoring needs."""
        return self.scoring is None or name in self.scoring.drafters

    @property
    def score_from(self) -> torch.Tensor | None:
        """[B] the first committed position whose prediction may be asked for (None: any)."""
        return None if self.scoring is None else self.scoring.start

    def row_tokens(self, r: int) -> torch.Tensor:
        return self.seqs[r, : int(self.seq_lens[r])]

    def select_rows(self, keep: torch.Tensor) -> None:
        self.seqs, self.seq_lens, self.prev_lens = self.seqs[keep], self.seq_lens[keep], self.prev_lens[keep]
        self.target_hidden = None
        if self.scoring is not None:
            self.scoring = self.scoring.select_rows(keep)


@dataclass
class Proposal:
    tokens: torch.Tensor                  # [n, G] draft tokens, right-padded (G = max gamma asked)
    lengths: torch.Tensor                 # [n] real draft length per row (may be < gamma, even 0)
    probs: torch.Tensor | None = None     # [n, G, V] distributions the drafts were sampled from;
                                          # None: deterministic drafts (q is one-hot)


@dataclass
class Predictions:
    """A drafter's teacher-forced prediction at each newly committed position of each row."""
    tokens: torch.Tensor                  # [n, M] argmax prediction (-1 where a row has < M positions)
    probs: torch.Tensor | None = None     # [n, M, V] full distributions (sampling mode)


def choose_tokens(ctx: DraftContext, logits: torch.Tensor) -> torch.Tensor:
    """One draft token per row: argmax when greedy, else a sample from the warped distribution."""
    if ctx.sampling is None:
        return logits.argmax(-1)
    return torch.multinomial(ctx.sampling.probs(logits), 1, generator=ctx.generator).squeeze(1)


class DrafterFamily:
    """Members that draft together. The engine calls start and select_rows here, not on the
    members, and propose_many in place of each member's propose."""

    def start(self, ctx: DraftContext) -> None:
        """A new batch begins: forget every row of every member."""

    def admit(self, ctx: DraftContext, rows: torch.Tensor) -> None:
        """Rows `rows` (the last local rows) joined the running batch (continuous batching); their
        prompts' features are in ctx.target_hidden, [len(rows), W, H] per layer, in `rows` order."""
        _cannot_admit(self)

    def select_rows(self, keep: torch.Tensor) -> None:
        """The batch shrank: only local rows `keep` remain, in that order."""

    def propose_many(self, ctx: DraftContext, asks: list[tuple["Drafter", torch.Tensor, torch.Tensor]]
                     ) -> list[Proposal]:
        """Each (member, rows, gammas) ask's Proposal, as member.propose would give it."""
        raise NotImplementedError


class Drafter:
    """Base class. Subclasses set `name` and implement propose (and commit, if they keep state)."""
    name: str = "drafter"
    vocab_size: int | None = None         # None: works with any vocabulary (e.g. n-gram lookup)
    capabilities: Capabilities = Capabilities()
    family: DrafterFamily | None = None   # set: the engine starts, shrinks and asks the family instead

    def check_target(self, target) -> None:
        """Refuse a target whose vocabulary differs from this drafter's."""
        target_vocab = target.config.vocab_size
        if self.vocab_size is not None and self.vocab_size != target_vocab:
            raise DrafterError(
                f"drafter '{self.name}' has vocabulary size {self.vocab_size} but the target has {target_vocab}: "
                "a drafter must share the target's tokenizer; pick a drafter from the same model family")

    def start(self, ctx: DraftContext) -> None:
        """A new batch begins: forget every row."""

    def admit(self, ctx: DraftContext, rows: torch.Tensor) -> None:
        """Rows `rows` (the last local rows) joined the running batch (continuous batching); their
        prompts' features are in ctx.target_hidden, [len(rows), W, H] per layer, in `rows` order. A
        drafter without per-row state (no `start` of its own) has nothing to do."""
        if type(self).start is not Drafter.start:
            _cannot_admit(self)

    def propose(self, ctx: DraftContext, rows: torch.Tensor, gammas: torch.Tensor) -> Proposal:
        raise NotImplementedError

    def commit(self, ctx: DraftContext, rows: torch.Tensor) -> None:
        """Catch up on the tokens committed this round."""

    def select_rows(self, keep: torch.Tensor) -> None:
        """The batch shrank: only local rows `keep` remain, in that order."""


def _cannot_admit(unit) -> None:
    name = getattr(unit, "name", type(unit).__name__)
    raise DrafterError(f"drafter '{name}' keeps per-row state but cannot take requests joining a running batch "
                       "(it has no admit): decode with all requests at once (no arrivals, no max_batch), or give it "
                       "an admit method")


class Scorer:
    """The full-information protocol: mix into a Drafter that can score committed positions."""

    def score(self, ctx: DraftContext, rows: torch.Tensor) -> Predictions:
        """Catch up on the committed tokens of `rows` (as commit does) and return this drafter's
        teacher-forced prediction at each newly committed position."""
        raise NotImplementedError

    def score_since(self, ctx: DraftContext, rows: torch.Tensor, since: torch.Tensor) -> Predictions:
        """Greedy teacher-forced predictions at committed positions since[i] .. seq_lens-1 of
        rows[i] (after commit() has seen those rounds): drafters with `deferred_scoring` only."""
        raise NotImplementedError(f"drafter '{getattr(self, 'name', type(self).__name__)}' does not score "
                                  "deferred rounds")


def draft_calls(pool: dict[str, Drafter]) -> dict[str, str]:
    """{drafter: its draft call}: the members of one family share the name of the first member in
    the pool (the engine asks them in one call); any other drafter is its own call. Learners
    cost a batch's drafting per call (LearnerPolicy's `draft_calls`)."""
    first: dict[int, str] = {}
    return {name: first.setdefault(id(d.family), name) if d.family is not None else name for name, d in pool.items()}
