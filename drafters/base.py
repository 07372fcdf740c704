"""The one small interface every drafter family implements.

The engine owns the committed tokens of every row (`DraftContext.seqs`); a drafter keeps
whatever private state it needs (a KV cache, an n-gram index) and syncs it in `commit`.

Round protocol, per drafter:
  propose(ctx, rows, gammas) -> Proposal      only for the rows that play this drafter
  (engine verifies, appends committed tokens to ctx.seqs)
  commit(ctx, rows, want_predictions) -> Predictions | None
      called for the rows it proposed for (and, in full-information mode, for every row):
      catch up on the committed tokens (teacher forcing) and, if asked, return its own
      prediction at every newly committed position (for counterfactual feedback).
  select_rows(keep)                           the batch shrank to `keep` (finished rows)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from specsel.verify import Sampling


class DrafterError(ValueError):
    """A drafter cannot be built or used as asked; the message names the fix."""


@dataclass
class DraftContext:
    """The engine's view of the batch shared with drafters (rows are local batch indices)."""
    seqs: torch.Tensor          # [B, capacity] committed tokens (prompt + generated), right-padded
    seq_lens: torch.Tensor      # [B] committed length of each row
    prev_lens: torch.Tensor     # [B] committed length before the last round
    sampling: Sampling | None = None
    generator: torch.Generator | None = None
    target_hidden: dict[int, torch.Tensor] | None = None   # layer -> [B, W, H] target features of the
                                                            # last verify window (feature_layers only)
    memo: dict = field(default_factory=dict)    # per-round scratch that drafters may share (reset each round)
    scored: frozenset[str] | None = None        # drafters whose predictions at committed positions may be
                                                # asked for (None: all); the others may skip work only
                                                # scoring needs (bandit feedback: none are)
    score_from: torch.Tensor | None = None      # [B] the first committed position whose prediction may be
                                                # asked for (None: any)

    def keeps_scores(self, name: str) -> bool:
        return self.scored is None or name in self.scored

    def row_tokens(self, r: int) -> torch.Tensor:
        return self.seqs[r, : int(self.seq_lens[r])]

    def select_rows(self, keep: torch.Tensor) -> None:
        self.seqs, self.seq_lens, self.prev_lens = self.seqs[keep], self.seq_lens[keep], self.prev_lens[keep]
        self.target_hidden = None
        if self.score_from is not None:
            self.score_from = self.score_from[keep]


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


class Drafter:
    """Base class. Subclasses set `name` and implement propose/commit."""
    name: str = "drafter"
    vocab_size: int | None = None         # None: works with any vocabulary (e.g. n-gram lookup)
    deterministic: bool = False           # True: drafts never depend on randomness (q one-hot)
    feature_layers: tuple[int, ...] = ()  # target hidden states (HF hidden_states numbering) this drafter
                                          # drafts from: captured from every verify forward (ctx.target_hidden)
    scoring_layers: tuple[int, ...] = ()  # hidden states it scores committed positions from, captured in
                                          # full-information mode only
    replay_exact: bool = True             # its draft chain equals its teacher-forced predictions while
                                          # accepted, so greedy replay of full-information records is exact
    sync_every_round: bool = False        # True: commit() is called for every row every round, even in
                                          # bandit mode (drafters that must see each round's features)
    deferred_scoring: bool = False        # True: implements scores(); in greedy full-information mode the
                                          # engine may score several rounds at once (generate(score_every=k))

    def check_target(self, target) -> None:
        """Refuse a target whose vocabulary differs from this drafter's."""
        target_vocab = target.config.vocab_size
        if self.vocab_size is not None and self.vocab_size != target_vocab:
            raise DrafterError(
                f"drafter '{self.name}' has vocabulary size {self.vocab_size} but the target has {target_vocab}: "
                "a drafter must share the target's tokenizer; pick a drafter from the same model family")

    def start(self, ctx: DraftContext) -> None:
        """A new batch begins: forget every row."""

    def propose(self, ctx: DraftContext, rows: torch.Tensor, gammas: torch.Tensor) -> Proposal:
        raise NotImplementedError

    def commit(self, ctx: DraftContext, rows: torch.Tensor, want_predictions: bool = False) -> Predictions | None:
        return None

    def scores(self, ctx: DraftContext, rows: torch.Tensor, since: torch.Tensor) -> Predictions:
        """Greedy teacher-forced predictions at committed positions since[i] .. seq_lens-1 of
        rows[i] (after commit() has seen those rounds): deferred_scoring drafters only."""
        raise NotImplementedError(f"drafter '{self.name}' does not score deferred rounds")

    def select_rows(self, keep: torch.Tensor) -> None:
        """The batch shrank: only local rows `keep` remain, in that order."""


# ---------------------------------------------------------------- registry

_REGISTRY: dict[str, Callable[..., Drafter]] = {}


def register(name: str, factory: Callable[..., Drafter], overwrite: bool = False) -> None:
    """Register a drafter factory under `name` so recipes can build pools by name."""
    if name in _REGISTRY and not overwrite:
        raise DrafterError(f"drafter '{name}' is already registered; pass overwrite=True to replace it")
    _REGISTRY[name] = factory


def registered() -> list[str]:
    return sorted(_REGISTRY)


def build(name: str, *args, **kwargs) -> Drafter:
    """Build the drafter registered as `name`."""
    if name not in _REGISTRY:
        raise DrafterError(f"unknown drafter '{name}'; registered: {', '.join(registered()) or 'none'}")
    drafter = _REGISTRY[name](*args, **kwargs)
    drafter.name = name
    return drafter

