"""GrowingLayer: the same keys and values as transformers' DynamicLayer, without copying the cache each update."""
import torch
from transformers.cache_utils import DynamicLayer

from specsel.modeling.growing import MIN_SPARE, GrowingLayer, growing_cache
from specsel.testing import tiny_model


def kv(batch, width, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 2, width, 4, generator=g), torch.randn(batch, 2, width, 4, generator=g)


def test_updates_crops_scatters_and_row_selection_match_dynamic_layer():
    grow, plain = GrowingLayer(), DynamicLayer()
    steps = [("update", 5), ("update", 1), ("crop", 2), ("update", 3), ("scatter", 0), ("select", 0),
             ("update", 2), ("update", MIN_SPARE + 40)]          # the last one outgrows the buffer
    for i, (op, arg) in enumerate(steps):
        for layer in (grow, plain):
            if op == "update":
                k, v = kv(layer.keys.shape[0] if layer.is_initialized else 3, arg, seed=i)
                out = layer.update(k, v)
            elif op == "crop":
                layer.keys, layer.values = layer.keys[:, :, :-arg], layer.values[:, :, :-arg]
            elif op == "scatter":       # what RaggedKVCache.keep does to the committed columns
                idx = torch.zeros(layer.keys.shape[0], 2, 1, 4, dtype=torch.long)
                layer.keys.scatter_(2, idx, torch.full_like(idx, 7, dtype=layer.keys.dtype))
            else:
                rows = torch.tensor([2, 0])
                layer.keys, layer.values = layer.keys.index_select(0, rows), layer.values.index_select(0, rows)
        assert torch.equal(grow.keys, plain.keys) and torch.equal(grow.values, plain.values), (i, op)
        if op == "update":
            assert torch.equal(out[0], plain.keys)


def test_an_update_within_capacity_writes_in_place():
    layer = GrowingLayer()
    layer.update(*kv(2, 10, seed=0))
    buffer = layer._kbuf
    for step in range(5):
        layer.update(*kv(2, 3, seed=step + 1))
        assert layer._kbuf is buffer and layer.keys.data_ptr() == buffer.data_ptr()
    assert layer.keys.shape[-2] == 25 and buffer.shape[-2] >= 25 + 1


def test_growing_cache_swaps_only_plain_layers():
    cache = growing_cache(tiny_model("llama", seed=0).config)
    assert cache.layers and all(type(layer) is GrowingLayer for layer in cache.layers)


def test_select_rows_moves_rows_down_in_place_and_matches_index_select():
    layer = GrowingLayer()
    layer.update(*kv(5, 7, seed=0))
    buffer_ptr = layer._kbuf.data_ptr()
    keep = torch.tensor([0, 2, 4])
    want_k, want_v = layer.keys.index_select(0, keep), layer.values.index_select(0, keep)
    assert layer.select_rows([0, 2, 4])
    assert torch.equal(layer.keys, want_k) and torch.equal(layer.values, want_v)
    assert layer._kbuf.data_ptr() == buffer_ptr              # no new buffer: rows moved inside it
    k, v = kv(3, 2, seed=1)                                    # and the next update appends in place
    layer.update(k, v)
    assert layer._kbuf.data_ptr() == buffer_ptr
    assert torch.equal(layer.keys[:, :, 7:], k) and torch.equal(layer.keys[:, :, :7], want_k)


def test_select_rows_declines_an_order_it_cannot_do_in_place():
    layer = GrowingLayer()
    layer.update(*kv(3, 4, seed=0))
    before = layer.keys.clone()
    assert not layer.select_rows([2, 0])                      # not ascending: the caller copies
    assert torch.equal(layer.keys, before)
