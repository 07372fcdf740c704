"""A batch's target prefill reused across runs: same outputs, its time still charged."""
import torch

from drafters import NgramDrafter
from drafters.eagle import EagleDrafter
from drafters.eagle_head import new_eagle_head
from specsel import Arm, PrefillCache, SpecEngine
from specsel.learners.policy import LearnerPolicy
from specsel.modeling.kvcache import RaggedKVCache
from specsel.testing import random_prompts, tiny_model

from conftest import hf_greedy, target_model

MAX_NEW = 16


def test_a_restored_cache_equals_the_prefilled_one_and_leaves_the_snapshot_alone():
    model = tiny_model("llama", seed=0)
    tokens = torch.randint(2, 128, (3, 9), generator=torch.Generator().manual_seed(1))
    widths = torch.tensor([8, 3, 5])
    first = RaggedKVCache(model, 3)
    first.prefill(tokens, widths)
    snap = first.snapshot()
    frozen = [(k.clone(), v.clone()) for k, v in snap.layers]
    second = RaggedKVCache(model, 3)
    second.restore(snap)
    window = torch.randint(2, 128, (3, 4), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a = first.forward(window, torch.tensor([4, 2, 3])).logits
        b = second.forward(window, torch.tensor([4, 2, 3])).logits
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    second.keep(torch.tensor([2, 1, 3]))
    assert all(torch.equal(k, fk) and torch.equal(v, fv) for (k, v), (fk, fv) in zip(snap.layers, frozen))


def test_runs_of_one_batch_share_the_prefill_and_stay_lossless():
    target = target_model("llama")
    pool = {"eagle": EagleDrafter(target, new_eagle_head(target, 1, seed=1)), "ngram": NgramDrafter()}
    engine = SpecEngine(target, pool, eos_token_id=1)
    prompts = random_prompts(3, min_len=2, max_len=10, seed=4)
    expected = [hf_greedy(target, p, MAX_NEW) for p in prompts]
    cache = PrefillCache()
    runs = [Arm.autoregressive(), Arm("eagle", 3), Arm("ngram", 2),
            LearnerPolicy("hedgespec", [Arm("eagle", 2), Arm("ngram", 2)], list(pool))]
    results = [engine.generate(prompts, arm, max_new_tokens=MAX_NEW, prefill_cache=cache,
                               feedback="full" if isinstance(arm, LearnerPolicy) else "bandit") for arm in runs]
    assert all(r.tokens == expected for r in results)
    assert cache.hits == len(runs) - 1
    charged = cache.entry.seconds
    assert all(r.prefill_s >= charged * 0.999 and r.wall_s > r.prefill_s for r in results)
    other = random_prompts(2, min_len=2, max_len=10, seed=5)          # other prompts: computed anew
    assert engine.generate(other, Arm("eagle", 2), max_new_tokens=4, prefill_cache=cache).tokens == \
        [hf_greedy(target, p, 4) for p in other]
    assert cache.hits == len(runs) - 1 and cache.entry.key[0] == tuple(tuple(p) for p in other)
