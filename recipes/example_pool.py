"""Drafter pools: the default pool of the embedded target, and how to register your own.

    python recipes/example_pool.py                      # list the default pool of the embedded target

A pool is {name: Drafter}; arms are pool x gammas. recipes/domain_eval.py takes this file as
`--pool recipes/example_pool.py` and calls `build_pool(target)`. Write your own file with a
`build_pool(target)` for another target, like the examples below.

Registry: `drafters.register(name, factory)` maps names to factories, `drafters.build(name, ...)`
calls them. Built in: ngram, model, early_exit, eagle (EAGLE-1/2/3 heads from a local dir),
lora (one LoRA expert on a shared base).
"""
from __future__ import annotations

import sys

from drafters import build, load_eagle_head, lora_experts
from drafters.pool import default_pool


def build_pool(target):
    """The embedded SmolLM2-135M-Instruct target's pool: n-gram, the general EAGLE head and three
    LoRA domain experts on it (math, code, medical), shipped in drafters/weights/."""
    return default_pool(target)


def llama3_pool(target, eagle_dir, eagle3_dir=None, adapters: dict | None = None):
    """Llama-3-8B-Instruct (or any LLaMA target) with EAGLE heads from local directories:

        target, tok = load_target("/models/Meta-Llama-3-8B-Instruct")
        pool = llama3_pool(target, "/models/EAGLE-LLaMA3-Instruct-8B",
                           eagle3_dir="/models/EAGLE3-LLaMA3.1-Instruct-8B",
                           adapters={"lora_math": "/adapters/math", "lora_code": "/adapters/code"})

    eagle_dir holds an EAGLE-1/2 checkpoint (config.json + pytorch_model.bin, keys fc.*,
    layers.0.*), eagle3_dir an EAGLE-3 one (midlayer.*, d2t); adapters are PEFT LoRA
    directories trained on the EAGLE-1/2 head (recipes/train_lora_drafter.py --base eagle_dir).
    """
    pool = {"ngram": build("ngram")}
    if adapters:   # the general head and its experts share one head in memory
        pool.update(lora_experts(target, load_eagle_head(eagle_dir, target), adapters, base_name="eagle"))
    else:
        pool["eagle"] = build("eagle", target, eagle_dir)
    if eagle3_dir:
        pool["eagle3"] = build("eagle", target, eagle3_dir)
    return pool


def qwen2_pool(target, eagle_dir, small_model=None):
    """Qwen2-7B-Instruct with an EAGLE head, plus optionally a small same-tokenizer model
    (e.g. Qwen2-0.5B-Instruct loaded with AutoModelForCausalLM) as a classic drafter:

        target, tok = load_target("/models/Qwen2-7B-Instruct")
        small = AutoModelForCausalLM.from_pretrained("/models/Qwen2-0.5B-Instruct", torch_dtype=target.dtype)
        pool = qwen2_pool(target, "/models/EAGLE-Qwen2-7B-Instruct", small_model=small)
    """
    pool = {"ngram": build("ngram"), "eagle": build("eagle", target, eagle_dir)}
    if small_model is not None:
        pool["qwen2_0.5b"] = build("model", small_model.to(target.device))
    return pool


def main() -> int:
    from specsel.modeling.target import EMBEDDED_DEFAULT, load_target
    target, _ = load_target(EMBEDDED_DEFAULT)
    for name, drafter in build_pool(target).items():
        print(f"{name:14s} {type(drafter).__name__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
