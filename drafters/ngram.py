"""Prompt lookup (n-gram) drafter: copy what followed an earlier occurrence of the context's suffix.

Drafts are built one token at a time: token k+1 is the lookup on (context + drafts 1..k).
So every draft token is a deterministic function of its prefix, exactly like a greedy
model drafter, and its teacher-forced prediction at a committed position is the same
lookup on the true prefix. That keeps counterfactual feedback and greedy replay exact.
"""
from __future__ import annotations

import torch

from .base import DraftContext, Drafter, Predictions, Proposal


class NgramIndex:
    """Earliest end position of every n-gram (min_n <= n <= max_n) of a growing token list."""

    def __init__(self, max_n: int = 3, min_n: int = 1):
        self.max_n, self.min_n = max_n, min_n
        self.tokens: list[int] = []
        self.first_end: dict[tuple, int] = {}
        self._added: list[tuple] = []          # keys in insertion order, for truncate()

    def append(self, token: int) -> None:
        self.tokens.append(token)
        end = len(self.tokens) - 1
        for n in range(self.min_n, min(self.max_n, end + 1) + 1):
            key = tuple(self.tokens[end - n + 1:])
            if key not in self.first_end:
                self.first_end[key] = end
                self._added.append(key)

    def truncate(self, length: int) -> None:
        while self._added and self.first_end[self._added[-1]] >= length:
            del self.first_end[self._added.pop()]
        del self.tokens[length:]

    def predict(self) -> int | None:
        """Token after the earliest earlier occurrence of the longest matching suffix, or None."""
        L = len(self.tokens)
        for n in range(min(self.max_n, L), self.min_n - 1, -1):
            end = self.first_end.get(tuple(self.tokens[L - n:]))
            if end is not None and end < L - 1:
                return self.tokens[end + 1]
        return None


class NgramDrafter(Drafter):
    name = "ngram"
    vocab_size = None
    deterministic = True

    def __init__(self, max_n: int = 3, min_n: int = 1):
        if not 1 <= min_n <= max_n:
            raise ValueError(f"ngram drafter needs 1 <= min_n <= max_n (got min_n={min_n}, max_n={max_n})")
        self.max_n, self.min_n = max_n, min_n
        self.indexes: list[NgramIndex] = []

    def start(self, ctx: DraftContext) -> None:
        self.indexes = [NgramIndex(self.max_n, self.min_n) for _ in range(ctx.seqs.shape[0])]

    def _synced(self, ctx: DraftContext, r: int, upto: int) -> NgramIndex:
        index = self.indexes[r]
        have = len(index.tokens)
        if have < upto:
            for t in ctx.seqs[r, have:upto].tolist():
                index.append(t)
        return index

    def propose(self, ctx: DraftContext, rows: torch.Tensor, gammas: torch.Tensor) -> Proposal:
        G = int(gammas.max()) if len(gammas) else 0
        tokens = torch.zeros(len(rows), G, dtype=torch.long)
        lengths = torch.zeros(len(rows), dtype=torch.long)
        for i, (r, g) in enumerate(zip(rows.tolist(), gammas.tolist())):
            committed = int(ctx.seq_lens[r])
            index = self._synced(ctx, r, committed)
            for k in range(g):
                t = index.predict()
                if t is None:
                    break
                tokens[i, k] = t
                index.append(t)
                lengths[i] = k + 1
            index.truncate(committed)
        return Proposal(tokens.to(ctx.seqs.device), lengths.to(ctx.seqs.device), None)

    def commit(self, ctx: DraftContext, rows: torch.Tensor, want_predictions: bool = False) -> Predictions | None:
        if not want_predictions:
            return None  # the index catches up lazily at the next propose
        starts, ends = ctx.prev_lens[rows].tolist(), ctx.seq_lens[rows].tolist()
        M = max((e - s for s, e in zip(starts, ends)), default=0)
        preds = torch.full((len(rows), M), -1, dtype=torch.long)
        for i, r in enumerate(rows.tolist()):
            index = self._synced(ctx, r, starts[i])
            for j, s in enumerate(range(starts[i], ends[i])):
                t = index.predict()
                preds[i, j] = -2 if t is None else t   # -2: no prediction (never equals a token)
                index.append(int(ctx.seqs[r, s]))
        return Predictions(preds.to(ctx.seqs.device), None)

    def select_rows(self, keep: torch.Tensor) -> None:
        self.indexes = [self.indexes[i] for i in keep.tolist()]
