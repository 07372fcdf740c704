"""recipes/example_pool.py: the registration examples work (tiny random Llama / Qwen2 targets)."""
import copy

import pytest
import torch

from drafters import DrafterError
from drafters.eagle_head import new_eagle_head
from drafters.pool import default_pool
from drafters.training.lora import new_lora
from specsel import Arm, SpecEngine
from specsel.testing import random_prompts, tiny_model

from conftest import hf_greedy, load_recipe


def recipe():
    return load_recipe("example_pool")


def eagle1_checkpoint(target, path, seed):
    """A head saved in the published EAGLE-1 layout (pytorch_model.bin, layers.0.*, embed copy)."""
    head = new_eagle_head(target, 1, seed=seed)
    state = {k.replace("layer.", "layers.0.", 1): v for k, v in head.state_dict().items() if k != "d2t"}
    state["embed_tokens.weight"] = target.model.embed_tokens.weight.clone()
    path.mkdir(parents=True)
    torch.save(state, path / "pytorch_model.bin")
    head.config.to_json_file(path / "config.json")
    return head


def check_lossless(target, pool):
    engine = SpecEngine(target, pool, eos_token_id=1)
    prompts = random_prompts(len(pool), min_len=2, max_len=8, seed=3)
    arms = [Arm(name, 3) for name in pool]
    for feedback in ("bandit", "full"):
        result = engine.generate(prompts, arms, max_new_tokens=12, feedback=feedback)
        assert result.tokens == [hf_greedy(target, p, 12) for p in prompts]


def test_llama3_example_with_eagle1_eagle3_and_adapters(tmp_path):
    target = tiny_model("llama", seed=0, num_layers=4)
    base = eagle1_checkpoint(target, tmp_path / "eagle", seed=1)
    new_eagle_head(target, 3, draft_tokens=torch.arange(0, 128, 2), seed=2).save(tmp_path / "eagle3")
    for domain in ("math", "code"):
        new_lora(copy.deepcopy(base), rank=2).save_pretrained(tmp_path / domain)
    pool = recipe().llama3_pool(target, tmp_path / "eagle", eagle3_dir=tmp_path / "eagle3",
                                adapters={"lora_math": tmp_path / "math", "lora_code": tmp_path / "code"})
    assert list(pool) == ["ngram", "eagle", "lora_math", "lora_code", "eagle3"]
    assert pool["eagle3"].head.version == 3 and pool["eagle3"].head.draft_vocab_size == 64
    check_lossless(target, pool)


def test_qwen2_example_with_eagle_and_small_model(tmp_path):
    target = tiny_model("qwen2", seed=0, num_layers=4)
    new_eagle_head(target, 1, seed=1).save(tmp_path / "eagle")
    pool = recipe().qwen2_pool(target, tmp_path / "eagle", small_model=tiny_model("qwen2", seed=5))
    assert list(pool) == ["ngram", "eagle", "qwen2_0.5b"]
    check_lossless(target, pool)


def test_default_pool_rejects_unknown_names():
    with pytest.raises(DrafterError, match="unknown pool drafter.*has: ngram, eagle"):
        default_pool(tiny_model("llama"), ["ngram", "medusa"])


def test_pool_builds_a_shipped_eagle3_head_and_its_experts_as_one_family(tmp_path, monkeypatch):
    """EAGLE-3 members of the default pool: the head and its LoRA experts share one family
    beside the EAGLE-1 head's, every member is lossless, and a member whose weights are not
    shipped is a one-line error naming the recipe that trains it."""
    import drafters.pool as pool_module
    target = tiny_model("llama", seed=0, num_layers=4)
    new_eagle_head(target, 1, seed=1).save(tmp_path / "eagle")
    head3 = new_eagle_head(target, 3, draft_tokens=torch.arange(0, 128, 2), seed=2)
    head3.save(tmp_path / "eagle3")
    for seed, domain in enumerate(("math", "code")):
        lora = new_lora(copy.deepcopy(head3), rank=2, seed=seed)
        with torch.no_grad():          # a fresh adapter is the base itself: move it so the expert differs
            for name, p in lora.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.2)
        lora.save_pretrained(tmp_path / "eagle3_lora" / domain)
    monkeypatch.setitem(pool_module.HEAD_DIRS, "eagle", tmp_path / "eagle")
    monkeypatch.setitem(pool_module.HEAD_DIRS, "eagle3", tmp_path / "eagle3")
    adapters = {n: tmp_path / "eagle3_lora" / n.split("_", 1)[1] for n in pool_module.EAGLE3_ADAPTER_DIRS}
    monkeypatch.setitem(pool_module.HEAD_ADAPTERS, "eagle3", adapters)
    pool = default_pool(target, ["ngram", "eagle", "eagle3", "eagle3_math", "eagle3_code"])
    assert list(pool) == ["ngram", "eagle", "eagle3", "eagle3_math", "eagle3_code"]
    assert pool["eagle3"].head.version == 3 and pool["eagle3"].head.draft_vocab_size == 64
    assert pool["eagle3"].family is pool["eagle3_code"].family is not pool["eagle"].family
    check_lossless(target, pool)
    assert {"eagle3", "eagle3_math", "eagle3_code"} <= set(pool_module.pool_names(include_optional=True))
    with pytest.raises(DrafterError, match="eagle3_medical are missing.*recipes/train_eagle3_expert.py"):
        default_pool(target, ["eagle3_medical"])
