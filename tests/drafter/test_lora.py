"""LoRA domain experts: one base in memory, adapters switched per arm, lossless in the engine."""
import copy

import pytest
import torch

from drafters import DrafterError
from drafters.eagle_head import new_eagle_head
from drafters.lora import lora_experts
from drafters.training.lora import new_lora
from specsel import Arm, SpecEngine
from specsel.testing import random_prompts, tiny_model

from conftest import hf_greedy


def save_random_adapter(base, path, seed):
    """A LoRA adapter with non-zero B (a fresh one is a no-op), saved the PEFT way."""
    peft_model = new_lora(copy.deepcopy(base), rank=4, seed=seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(seed))
    peft_model.save_pretrained(path)


@pytest.mark.parametrize("kind", ["eagle", "model"])
def test_experts_share_one_base_and_stay_lossless(tmp_path, kind):
    target = tiny_model("llama", seed=0, num_layers=4)
    base = new_eagle_head(target, 1, seed=1) if kind == "eagle" else tiny_model("llama", seed=3)
    reference = copy.deepcopy(base)
    for i, domain in enumerate(("math", "code")):
        save_random_adapter(base, tmp_path / domain, seed=10 + i)
    pool = lora_experts(target, base, {"lora_math": tmp_path / "math", "lora_code": tmp_path / "code"},
                        base_name="base")
    assert list(pool) == ["base", "lora_math", "lora_code"]
    # one base module in memory
    modules = {id(d.head if kind == "eagle" else d.model) for d in pool.values()}
    assert len(modules) == 1

    # adapters change the drafter, the base (adapters disabled) is the original module
    x = torch.randint(0, 128, (1, 6))
    def run(drafter):
        drafter.activate()
        if kind == "eagle":
            return drafter.head(input_ids=x, features=torch.ones(1, 6, 64)).logits
        return drafter.model(x).logits
    ref = reference(input_ids=x, features=torch.ones(1, 6, 64)).logits if kind == "eagle" else reference(x).logits
    torch.testing.assert_close(run(pool["base"]), ref)
    assert not torch.allclose(run(pool["lora_math"]), ref)
    math_out = run(pool["lora_math"])
    assert not torch.allclose(math_out, run(pool["lora_code"]))
    # switching back and forth (activate only touches the layers when the choice changes)
    torch.testing.assert_close(run(pool["base"]), ref)
    torch.testing.assert_close(run(pool["lora_math"]), math_out)
    assert not any(p.requires_grad for n, p in base.named_parameters() if "lora_" in n)   # still inference

    engine = SpecEngine(target, pool, eos_token_id=1)
    prompts = random_prompts(3, min_len=2, max_len=9, seed=2)
    expected = [hf_greedy(target, p, 16) for p in prompts]
    arms = [Arm("lora_math", 3), Arm("lora_code", 2), Arm("base", 4)]
    for feedback in ("bandit", "full"):
        result = engine.generate(prompts, arms, max_new_tokens=16, feedback=feedback)
        assert result.tokens == expected


def test_missing_adapter_dir_names_the_fix(tmp_path):
    target = tiny_model("llama", seed=0)
    with pytest.raises(DrafterError, match="adapter_config.json"):
        lora_experts(target, new_eagle_head(target, 1), {"lora_math": tmp_path})
