"""Prompt lookup (n-gram) drafter: copy what followed an earlier occurrence of the context's suffix.

Drafts are built one token at a time by an automaton whose state depends on the tokens
alone (NgramIndex). So every draft token is a deterministic function of its prefix, like a
greedy model drafter, and its teacher-forced prediction at a committed position is the
same function of the true prefix: counterfactual feedback and greedy replay stay exact.
"""
from __future__ import annotations

import torch

from specsel.core.drafting import Capabilities, DraftContext, Drafter, Predictions, Proposal, Scorer


class NgramIndex:
    """Prompt lookup as an automaton over a growing token list.

    `pointer` marks an earlier position aligned with the end of the list: the prediction is
    the token after it. A new token that equals that prediction just advances the pointer
    (keep copying the same earlier span, as prompt lookup does); any other token re-matches:
    the longest suffix of n tokens (max_n >= n >= min_n) seen before, at its most recent
    (`prefer="latest"`) or first (`"earliest"`) earlier occurrence. The state is a function of
    the tokens alone, so `truncate` restores it exactly.
    """

    def __init__(self, max_n: int = 3, min_n: int = 2, prefer: str = "latest"):
        if prefer not in ("latest", "earliest"):
            raise ValueError(f"prefer must be 'latest' or 'earliest' (got {prefer!r})")
        self.max_n, self.min_n, self.latest = max_n, min_n, prefer == "latest"
        self.tokens: list[int] = []
        self.pointers: list[int | None] = []     # pointer after each token
        self.seen: dict[tuple, int] = {}         # n-gram -> end of its chosen occurrence
        self.before: dict[tuple, int] = {}       # n-gram -> end of the chosen occurrence before the last
        self._journal: list[tuple] = []          # (key, old seen, old before) per update, for truncate()

    def append(self, token: int) -> None:
        pointer = self.pointers[-1] if self.pointers else None
        end = len(self.tokens)
        self.tokens.append(token)
        for n in range(self.min_n, min(self.max_n, end + 1) + 1):
            key = tuple(self.tokens[end - n + 1:])
            old = self.seen.get(key)
            if old is None or self.latest:
                self._journal.append((end, key, old, self.before.get(key)))
                if old is not None:
                    self.before[key] = old
                self.seen[key] = end
        if pointer is not None and self.tokens[pointer + 1] == token:
            self.pointers.append(pointer + 1)
        else:
            self.pointers.append(self._match())

    def _match(self) -> int | None:
        L = len(self.tokens)
        for n in range(min(self.max_n, L - 1), self.min_n - 1, -1):
            key = tuple(self.tokens[L - n:])
            end = self.seen.get(key)
            if end == L - 1:                     # that is the suffix itself
                end = self.before.get(key) if self.latest else None
            if end is not None and end < L - 1:
                return end
        return None

    def truncate(self, length: int) -> None:
        while self._journal and self._journal[-1][0] >= length:
            _, key, old, old_before = self._journal.pop()
            for table, value in ((self.seen, old), (self.before, old_before)):
                if value is None:
                    table.pop(key, None)
                else:
                    table[key] = value
        del self.tokens[length:]
        del self.pointers[length:]

    def predict(self) -> int | None:
        pointer = self.pointers[-1] if self.pointers else None
        return None if pointer is None else self.tokens[pointer + 1]


class NgramDrafter(Drafter, Scorer):
    name = "ngram"
    vocab_size = None
    capabilities = Capabilities(deterministic=True)

    def __init__(self, max_n: int = 3, min_n: int = 2, prefer: str = "latest"):
        if not 1 <= min_n <= max_n:
            raise ValueError(f"ngram drafter needs 1 <= min_n <= max_n (got min_n={min_n}, max_n={max_n})")
        self.max_n, self.min_n, self.prefer = max_n, min_n, prefer
        self.indexes: list[NgramIndex] = []

    def start(self, ctx: DraftContext) -> None:
        self.indexes = [NgramIndex(self.max_n, self.min_n, self.prefer) for _ in range(ctx.seqs.shape[0])]

    def admit(self, ctx: DraftContext, rows: torch.Tensor) -> None:
        """New rows joined the batch: an empty index each (it catches up on the prompt lazily)."""
        self.indexes += [NgramIndex(self.max_n, self.min_n, self.prefer) for _ in range(len(rows))]

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

    def commit(self, ctx: DraftContext, rows: torch.Tensor) -> None:
        """Nothing to do: the index catches up lazily at the next propose."""

    def score(self, ctx: DraftContext, rows: torch.Tensor) -> Predictions:
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
