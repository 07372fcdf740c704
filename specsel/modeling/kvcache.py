"""Batched KV cache with ragged rows and per-row rollback, over any transformers causal LM.

Layout (per layer, shape [B, heads, T, head_dim], one HF `DynamicCache` whose layers append in
place: specsel.modeling.growing):

    columns [0, lengths[r])   row r's committed tokens, left-aligned, contiguous
    columns [lengths[r], T0)  dead space for row r (other rows are longer)
    columns [T0, T)           the *tail*: tentative tokens appended by forwards since the
                              last `keep`; `tail_valid[r, c]` says which belong to row r

A forward appends its window of W columns for every row (ragged widths are masked),
so rows never block each other. `keep(n)` then moves the first n[r] valid tail tokens of
each row right after its committed prefix and crops the cache to the longest row, so
rejected draft tokens leave no trace: memory never grows with rejections and no prefix is
ever recomputed. Only tail columns are copied, never the prefix.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from transformers import DynamicCache

from specsel.modeling.compat import cache_kwargs, capture_hidden_states, grouped_query_attention
from specsel.modeling.growing import GrowingLayer, growing_cache

APPEND_IN_PLACE = True      # False: transformers' DynamicCache, copying the cache each forward (bench_cache.py)


@dataclass(frozen=True)
class CacheSnapshot:
    """The committed keys and values of every layer, each row's length and the committed width."""
    layers: list
    lengths: torch.Tensor
    width: int


class RaggedKVCache:
    def __init__(self, model, batch_size: int):
        self.model = model
        self.device = model.device
        self.cache = growing_cache(model.config) if APPEND_IN_PLACE else DynamicCache(config=model.config)
        self.lengths = torch.zeros(batch_size, dtype=torch.long, device=self.device)
        self.tail_valid = torch.zeros(batch_size, 0, dtype=torch.bool, device=self.device)
        self.committed_width = 0  # T0
        self.attn_impl = getattr(model.config, "_attn_implementation", "sdpa")

    @property
    def batch_size(self) -> int:
        return self.lengths.shape[0]

    @property
    def width(self) -> int:  # T
        return self.committed_width + self.tail_valid.shape[1]

    def next_positions(self) -> torch.Tensor:
        """Position id of the next token of each row (committed + valid tentative tokens)."""
        return self.lengths + self.tail_valid.sum(1)

    def forward(self, tokens: torch.Tensor, widths: torch.Tensor, capture: Sequence[int] = (),
                logits: bool = True, **model_kwargs):
        """Run the model on `tokens` [B, W]; only tokens[r, :widths[r]] are real for row r.

        Returns the model output; logits[r, i] is the next-token distribution after tokens[r, i].
        logits=False skips the LM head (a prefill or catch-up that only fills the cache).
        capture: hidden-state indices (HF `hidden_states` numbering) to return as
        `out.captured[k]` [B, W, H]; only those are kept, through forward hooks.
        model_kwargs go to the model as they are (e.g. an EAGLE head's `features`).
        Rows with width 0 compute one masked dummy column that no later query ever sees.
        """
        B, W = tokens.shape
        T = self.width
        widths = widths.to(self.device)
        ar = torch.arange(W, device=self.device)
        window_valid = ar[None, :] < widths[:, None]
        position_ids = self.next_positions()[:, None] + ar[None, :]
        cols = torch.arange(self.committed_width, device=self.device)
        past_valid = torch.cat([cols[None, :] < self.lengths[:, None], self.tail_valid], dim=1)  # [B, T]
        # a width-0 row still attends to its own first column, so no query row is fully masked
        self_visible = window_valid | (ar[None, :] == 0)
        mask = self._attention_mask(past_valid, self_visible, W)
        with capture_hidden_states(self.model, capture) as captured, grouped_query_attention(self.device):
            out = self.model(input_ids=tokens, attention_mask=mask, position_ids=position_ids,
                             **cache_kwargs(self.model, self.cache), use_cache=True,
                             logits_to_keep=0 if logits else 1,
                             **model_kwargs)
        out.captured = captured
        if getattr(out, "logits", None) is not None and out.logits.device != self.device:
            out.logits = out.logits.to(self.device)     # a head on another device (a device map)
        self.tail_valid = torch.cat([self.tail_valid, window_valid], dim=1)
        assert self.width == T + W
        return out

    def prefill(self, tokens: torch.Tensor, widths: torch.Tensor, capture: Sequence[int] = (),
                max_padding: float = 0.25, row_kwargs: dict[str, torch.Tensor] | None = None,
                on_group: Callable | None = None, **model_kwargs) -> dict[int, torch.Tensor]:
        """Fill an empty cache with tokens[r, :widths[r]] of every row, without computing most of
        the padding: rows are prefilled in length groups (`length_groups`) in which no row is
        padded by more than `max_padding` of the group's longest row, then laid side by side in
        this cache's layout. Returns the captured hidden states [B, max width, H] (zeros past a
        row's width). One group (similar lengths) is one forward, as before.

        row_kwargs: model inputs laid out like `tokens` ([B, W, ...], e.g. an EAGLE head's
        features), cut to each group's rows and width; model_kwargs go to every forward as they
        are. on_group(rows, out) sees each group's model output (rows: indices into the batch)."""
        if self.width:
            raise RuntimeError("RaggedKVCache.prefill needs an empty cache")
        widths = widths.to(self.device)
        row_kwargs = row_kwargs or {}
        groups = length_groups(widths, max_padding)
        if len(groups) == 1:
            W = int(widths.max())
            out = self.forward(tokens[:, :W], widths, logits=False, capture=capture,
                               **{k: v[:, :W] for k, v in row_kwargs.items()}, **model_kwargs)
            self.keep(widths)
            if on_group is not None:
                on_group(torch.arange(len(widths), device=self.device), out)
            return out.captured
        B, W = len(widths), int(widths.max())
        keys: list = []
        values: list = []
        captured: dict[int, torch.Tensor] = {}
        for rows in groups:
            part = RaggedKVCache(self.model, len(rows))
            w = int(widths[rows].max())
            out = part.forward(tokens[rows, :w], widths[rows], logits=False, capture=capture,
                               **{k: v[rows, :w] for k, v in row_kwargs.items()}, **model_kwargs)
            part.keep(widths[rows])
            if on_group is not None:
                on_group(rows, out)
            for i, layer in enumerate(part.cache.layers):
                if i == len(keys):
                    H, D = layer.keys.shape[1], layer.keys.shape[3]
                    keys.append(layer.keys.new_zeros(B, H, W, D))
                    values.append(layer.values.new_zeros(B, H, W, layer.values.shape[3]))
                at = rows.to(layer.keys.device)     # a layer may sit on another device (a device map)
                keys[i][at, :, :w] = layer.keys
                values[i][at, :, :w] = layer.values
            for k, h in out.captured.items():
                if k not in captured:
                    captured[k] = h.new_zeros(B, W, h.shape[-1])
                captured[k][rows, :w] = h
        for i, (k, v) in enumerate(zip(keys, values)):
            self.cache.update(k, v, i)
        self.lengths = widths.clone()
        self.committed_width = W
        self.tail_valid = self.tail_valid[:, :0]
        return captured

    def snapshot(self) -> "CacheSnapshot":
        """A copy of the committed cache, from which another cache can start (`restore`)."""
        if self.tail_valid.shape[1]:
            raise RuntimeError("RaggedKVCache.snapshot needs a cache without tentative tokens (call keep first)")
        layers = [(layer.keys.clone(), layer.values.clone()) for layer in self.cache.layers
                  if getattr(layer, "keys", None) is not None and layer.keys.numel()]
        return CacheSnapshot(layers, self.lengths.clone(), self.committed_width)

    def restore(self, snap: "CacheSnapshot") -> None:
        """Fill an empty cache with a copy of `snap` (the snapshot stays unchanged)."""
        if self.width:
            raise RuntimeError("RaggedKVCache.restore needs an empty cache")
        if len(snap.lengths) != self.batch_size:
            raise RuntimeError(f"snapshot of {len(snap.lengths)} rows restored into a cache of {self.batch_size}")
        for i, (k, v) in enumerate(snap.layers):
            self.cache.update(k.clone(), v.clone(), i)
        self.lengths = snap.lengths.clone()
        self.committed_width = snap.width
        self.tail_valid = self.tail_valid[:, :0]

    def take(self, rows: torch.Tensor) -> "RaggedKVCache":
        """A new cache holding a copy of the committed tokens of `rows` (a forward over a few rows
        of a wide cache computes only those; `put` writes them back)."""
        if self.tail_valid.shape[1]:
            raise RuntimeError("RaggedKVCache.take needs a cache without tentative tokens (call keep first)")
        rows = rows.to(self.device)
        part = RaggedKVCache(self.model, len(rows))
        part.lengths = self.lengths[rows].clone()
        width = int(part.lengths.max()) if len(rows) else 0
        if width:
            for i, layer in enumerate(self.cache.layers):
                at = rows.to(layer.keys.device)
                part.cache.update(layer.keys[at, :, :width], layer.values[at, :, :width], i)
        part.committed_width = width
        return part

    @torch.no_grad()
    def put(self, rows: torch.Tensor, part: "RaggedKVCache") -> None:
        """Write `part`'s committed tokens into `rows` of this cache (the inverse of take)."""
        if self.tail_valid.shape[1] or part.tail_valid.shape[1]:
            raise RuntimeError("RaggedKVCache.put needs caches without tentative tokens (call keep first)")
        rows = rows.to(self.device)
        W, T0 = part.committed_width, self.committed_width
        for i, layer in enumerate(part.cache.layers):
            if not (getattr(layer, "keys", None) is not None and layer.keys.numel()):
                continue
            if W > T0:      # room for the part's columns: dead columns for every other row
                B, H, D = self.batch_size, layer.keys.shape[1], layer.keys.shape[3]
                self.cache.update(layer.keys.new_zeros(B, H, W - T0, D),
                                  layer.values.new_zeros(B, H, W - T0, layer.values.shape[3]), i)
            mine = self.cache.layers[i]
            at = rows.to(mine.keys.device)
            mine.keys[at, :, :W] = layer.keys[:, :, :W]
            mine.values[at, :, :W] = layer.values[:, :, :W]
        self.lengths[rows] = part.lengths
        self.committed_width = max(T0, W)

    @torch.no_grad()
    def extend(self, part: "RaggedKVCache") -> None:
        """Append `part`'s rows after this cache's rows (requests joining a running batch): its
        committed tokens become rows batch_size .. batch_size + part.batch_size - 1. Neither cache
        may hold tentative tokens. The narrower side is padded with dead columns."""
        if self.tail_valid.shape[1] or part.tail_valid.shape[1]:
            raise RuntimeError("RaggedKVCache.extend needs caches without tentative tokens (call keep first)")
        W, B, k = max(self.committed_width, part.committed_width), self.batch_size, part.batch_size
        filled = lambda layer: getattr(layer, "keys", None) is not None and layer.keys.numel() > 0   # noqa: E731
        for i in range(max(len(self.cache.layers), len(part.cache.layers))):
            mine = self.cache.layers[i] if i < len(self.cache.layers) else None
            theirs = part.cache.layers[i] if i < len(part.cache.layers) else None
            like = mine if mine is not None and filled(mine) else theirs if theirs is not None and filled(theirs) \
                else None
            if like is None:
                continue                            # no tokens on either side yet
            joined = []
            for name in ("keys", "values"):
                ref = getattr(like, name)

                def block(layer, rows):
                    t = getattr(layer, name) if layer is not None and filled(layer) else \
                        ref.new_zeros(rows, ref.shape[1], 0, ref.shape[3])
                    t = t[:, :, :W].to(ref.device)
                    return torch.nn.functional.pad(t, (0, 0, 0, W - t.shape[2]))
                joined.append(torch.cat([block(mine, B), block(theirs, k)], dim=0))
            if mine is not None and filled(mine):
                mine.keys, mine.values = joined     # adopted into a new buffer at the next update
            else:
                self.cache.update(*joined, i)
        self.lengths = torch.cat([self.lengths, part.lengths.to(self.device)])
        self.tail_valid = self.tail_valid.new_zeros(len(self.lengths), 0)
        self.committed_width = W

    def _attention_mask(self, past_valid: torch.Tensor, window_visible: torch.Tensor, W: int):
        if self.attn_impl == "flash_attention_2":
            # flash-attn takes a 2D padding mask and unpads by it; queries sit after all valid keys.
            return torch.cat([past_valid, window_visible], dim=1).long()
        causal = torch.ones(W, W, dtype=torch.bool, device=self.device).tril()
        window = causal[None, :, :] & window_visible[:, None, :]                # [B, W(q), W(k)]
        past = past_valid[:, None, :].expand(-1, W, -1)                          # [B, W(q), T]
        mask = torch.cat([past, window], dim=2)[:, None]                         # [B, 1, W, T+W]
        if self.attn_impl == "eager":
            neg = torch.finfo(self.model.dtype).min
            return torch.zeros(mask.shape, dtype=self.model.dtype, device=self.device).masked_fill(~mask, neg)
        return mask

    @torch.no_grad()        # a cache is never differentiated; its layers' tensors are views of buffers
    def keep(self, n_keep: torch.Tensor) -> None:
        """Commit the first n_keep[r] valid tail tokens of each row; drop every other tail column."""
        n_keep = n_keep.to(self.device)
        T0, tail = self.committed_width, self.tail_valid
        if (tail.sum(1) < n_keep).any():
            raise RuntimeError("RaggedKVCache.keep: asked to keep more tokens than a row has in its tail")
        new_lengths = self.lengths + n_keep
        new_width = int(new_lengths.max()) if new_lengths.numel() else 0
        K = int(n_keep.max()) if n_keep.numel() else 0
        ar = torch.arange(tail.shape[1], device=self.device)
        in_place = bool((self.lengths == T0).all()) and bool((tail[:, :K] | (ar[None, :K] >= n_keep[:, None])).all())
        if K > 0 and not in_place:
            # source column of the i-th valid tail token of each row (stable: keeps order)
            order = torch.sort((~tail).to(torch.int8), dim=1, stable=True).indices[:, :K] + T0
            dest = self.lengths[:, None] + torch.arange(K, device=self.device)[None, :]
            for layer in self.cache.layers:
                for name in ("keys", "values"):
                    kv = getattr(layer, name)
                    H, D = kv.shape[1], kv.shape[3]
                    src_idx = order[:, None, :, None].expand(-1, H, -1, D).to(kv.device)
                    dst_idx = dest[:, None, :, None].expand(-1, H, -1, D).to(kv.device)
                    kv.scatter_(2, dst_idx, kv.gather(2, src_idx))
        self._crop(new_width)
        self.lengths = new_lengths
        self.committed_width = new_width
        self.tail_valid = tail[:, :0]

    def _crop(self, width: int) -> None:
        for layer in self.cache.layers:
            if getattr(layer, "keys", None) is not None and layer.keys.numel():
                layer.keys = layer.keys[:, :, :width]
                layer.values = layer.values[:, :, :width]

    def select_rows(self, rows: torch.Tensor) -> None:
        """Keep only `rows` (indices) of the batch, e.g. to drop finished requests."""
        rows = rows.to(self.device)
        kept = rows.tolist()
        for layer in self.cache.layers:
            if getattr(layer, "keys", None) is not None and layer.keys.numel():
                if isinstance(layer, GrowingLayer) and layer.select_rows(kept):
                    continue            # moved down in place: no copy of the whole cache
                at = rows.to(layer.keys.device)
                layer.keys = layer.keys.index_select(0, at)
                layer.values = layer.values.index_select(0, at)
        self.lengths = self.lengths.index_select(0, rows)
        self.tail_valid = self.tail_valid.index_select(0, rows)
        width = int(self.lengths.max()) if len(rows) else 0
        if self.tail_valid.shape[1] == 0 and width < self.committed_width:
            self._crop(width)
            self.committed_width = width


def length_groups(widths: torch.Tensor, max_padding: float = 0.25) -> list[torch.Tensor]:
    """Rows grouped for prefill, longest first: a row joins the current group while its width
    is at least (1 - max_padding) of the group's longest, so padding is at most that share of
    each row's forward. Rows of width 0 need no forward and join the last group."""
    order = torch.argsort(widths, descending=True, stable=True).tolist()
    groups: list[list[int]] = []
    for r in order:
        w = int(widths[r])
        if groups and (w == 0 or w >= (1 - max_padding) * int(widths[groups[-1][0]])):
            groups[-1].append(r)
        else:
            groups.append([r])
    return [torch.tensor(sorted(g), device=widths.device) for g in groups]

