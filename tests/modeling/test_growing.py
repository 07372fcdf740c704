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
