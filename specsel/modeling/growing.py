"""A transformers DynamicCache whose layers append in place instead of concatenating.

`DynamicLayer.update` concatenates the new keys and values to the whole cache, so every forward
copies every cached token of every layer: with 1,500-token prompts at batch 4 that was 14% of a
decode's time on a CPU (profile of the joint setting on general prompts). A `GrowingLayer`
keeps its keys and values as views ``[..., :n, :]`` of buffers with spare room, writes a
forward's columns after them, and copies the cache only when the buffers must grow (by a
quarter, at least 256 columns). Everything else -- crop, row selection, in-place scatters into
`keys`/`values` (RaggedKVCache.keep) -- works on the views as on DynamicLayer's tensors; when a
caller replaces `keys` by a tensor that is not a prefix view of the buffer (row selection,
restore), the next update adopts it into a new buffer.
"""
from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

MIN_SPARE = 256             # columns of room a new buffer gets at least (a decode's worth of tokens)


class GrowingLayer(DynamicLayer):
    _kbuf: torch.Tensor | None = None
    _vbuf: torch.Tensor | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized or self.keys.numel() == 0:
            self.is_initialized, self.device = True, key_states.device
            self.keys, self.values = key_states[..., :0, :], value_states[..., :0, :]
            self._kbuf = self._vbuf = None
        n, w = self.keys.shape[-2], key_states.shape[-2]
        if not (self._is_prefix_view(self.keys, self._kbuf, n + w)
                and self._is_prefix_view(self.values, self._vbuf, n + w)):
            self._grow(n + w)
        self._kbuf[..., n:n + w, :] = key_states
        self._vbuf[..., n:n + w, :] = value_states
        self.keys, self.values = self._kbuf[..., :n + w, :], self._vbuf[..., :n + w, :]
        return self.keys, self.values

    @staticmethod
    def _is_prefix_view(t: torch.Tensor, buf: torch.Tensor | None, need: int) -> bool:
        """t is buf[..., :t.shape[-2], :] and buf has room for `need` columns."""
        return (buf is not None and t.data_ptr() == buf.data_ptr() and t.stride() == buf.stride()
                and t.shape[:-2] == buf.shape[:-2] and t.shape[-1] == buf.shape[-1] and buf.shape[-2] >= need
                and t.dtype == buf.dtype)

    def _grow(self, need: int) -> None:
        cap = need + max(need // 4, MIN_SPARE)
        n = self.keys.shape[-2]
        for name in ("keys", "values"):
            t = getattr(self, name)
            buf = t.new_empty(*t.shape[:-2], cap, t.shape[-1])
            buf[..., :n, :] = t
            setattr(self, f"_{name[0]}buf", buf)

    def select_rows(self, rows: list[int]) -> bool:
        """Keep only `rows` (ascending batch indices), moving them down inside the buffers instead
        of copying the cache: row rows[i] goes to slot i, and the buffers are cut to len(rows)
        rows. Rows before the first dropped one do not move. False (nothing done) when the keys
        are not prefix views of the buffers or `rows` is not ascending; the caller then copies."""
        n = self.keys.shape[-2]
        if not (self._is_prefix_view(self.keys, self._kbuf, n) and self._is_prefix_view(self.values, self._vbuf, n)
                and all(a < b for a, b in zip(rows, rows[1:]))):
            return False
        for i, k in enumerate(rows):   # k >= i, and slots below i are written already: no source is overwritten
            if k != i:
                self._kbuf[i, ..., :n, :] = self._kbuf[k, ..., :n, :]
                self._vbuf[i, ..., :n, :] = self._vbuf[k, ..., :n, :]
        m = len(rows)
        self._kbuf, self._vbuf = self._kbuf[:m], self._vbuf[:m]
        self.keys, self.values = self._kbuf[..., :n, :], self._vbuf[..., :n, :]
        return True

    def reset(self) -> None:
        self._kbuf = self._vbuf = None
        super().reset()


def growing_cache(config) -> DynamicCache:
    """DynamicCache(config=config) with each plain DynamicLayer replaced by a GrowingLayer
    (sliding-window layers, which drop old columns, are kept as they are)."""
    cache = DynamicCache(config=config)
    cache.layers = [GrowingLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache
