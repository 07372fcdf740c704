"""Early-exit drafter: the target's first k layers + norm + head, sharing its weights, lossless."""
import functools

import pytest
import torch
from distribution_checks import N_TOKENS, PROMPT, V, chi2_pvalue, exact_joint

from drafters import DrafterError, EarlyExitDrafter, build
from drafters.early_exit import ExitGroup
from specsel import Arm, Sampling, SpecEngine
from specsel.core.drafting import Capabilities
from specsel.testing import random_prompts, tiny_model

from conftest import hf_greedy

L, MAX_NEW = 4, 24


@functools.lru_cache(maxsize=None)
def target4(arch, seed=0):
    return tiny_model(arch, seed=seed, num_layers=L)


@functools.lru_cache(maxsize=None)
def reference(arch, prompt, max_new=MAX_NEW):
    return hf_greedy(target4(arch), list(prompt), max_new)


def ptrs(module):
    return {p.data_ptr() for p in module.parameters()}


@pytest.mark.parametrize("k", [1, 2, 3])
def test_weights_are_shared_not_copied(arch, k):
    target = target4(arch)
    d = EarlyExitDrafter(target, k)
    thin, base = d.model, target.model
    assert len(thin.model.layers) == k and thin.config.num_hidden_layers == k
    assert target.config.num_hidden_layers == L and len(base.layers) == L      # target untouched
    for i in range(k):
        assert thin.model.layers[i] is base.layers[i]
        ours, theirs = thin.model.layers[i].self_attn.q_proj.weight, base.layers[i].self_attn.q_proj.weight
        assert ours.data_ptr() == theirs.data_ptr()
    assert thin.model.embed_tokens.weight.data_ptr() == base.embed_tokens.weight.data_ptr()
    assert thin.lm_head.weight.data_ptr() == target.lm_head.weight.data_ptr()
    assert thin.model.norm.weight.data_ptr() == base.norm.weight.data_ptr()
    # nothing new: every drafter tensor is one of the target's
    assert ptrs(thin) <= ptrs(target)
    assert not any(t.is_meta for t in [*thin.parameters(), *thin.buffers()])
    n_target_shared = sum(p.numel() for p in base.embed_tokens.parameters()) + \
        sum(p.numel() for layer in base.layers[:k] for p in layer.parameters()) + \
        sum(p.numel() for p in base.norm.parameters()) + sum(p.numel() for p in target.lm_head.parameters())
    assert sum(p.numel() for p in thin.parameters()) == n_target_shared


@torch.no_grad()
def test_logits_equal_first_k_layers_by_hand(arch):
    target = target4(arch)
    x = torch.tensor([random_prompts(1, min_len=9, max_len=9, seed=1)[0]])
    pos = torch.arange(x.shape[1])[None]
    for k in (1, 2, 3):
        got = EarlyExitDrafter(target, k).model(x).logits
        # by hand: embed -> first k layers (causal SDPA) -> final norm -> head
        h = target.model.embed_tokens(x)
        rope = target.model.rotary_emb(h, pos)
        causal = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool).tril()[None, None]
        for layer in target.model.layers[:k]:
            h = layer(h, attention_mask=causal, position_embeddings=rope, position_ids=pos)
            h = h[0] if isinstance(h, tuple) else h
        want = target.lm_head(target.model.norm(h))
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        # and the same through the target's own hidden states (layer k's output)
        hs = target(x, output_hidden_states=True).hidden_states
        torch.testing.assert_close(got, target.lm_head(target.model.norm(hs[k])), rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_target_hidden_states_not_duplicated_by_shared_hooks(arch):
    """transformers hooks the layers for output capture per model: sharing layers must not double them."""
    target = tiny_model(arch, seed=3, num_layers=L)    # fresh: no hooks installed yet
    d = EarlyExitDrafter(target, 2)
    x = torch.tensor([[3, 4, 5, 6]])
    assert len(d.model(x, output_hidden_states=True).hidden_states) == 2 + 1
    assert len(target(x, output_hidden_states=True).hidden_states) == L + 1
    assert len(d.model(x, output_hidden_states=True).hidden_states) == 2 + 1


@pytest.mark.parametrize("feedback", ["bandit", "full"])
@pytest.mark.parametrize("bsz", [1, 5])
def test_greedy_lossless(arch, bsz, feedback):
    target = target4(arch)
    d = EarlyExitDrafter(target, 2)
    engine = SpecEngine(target, {"ee": d}, eos_token_id=1)
    prompts = random_prompts(bsz, min_len=1, max_len=14, seed=3)
    for gamma in (1, 3, 6):
        result = engine.generate(prompts, Arm("ee", gamma), max_new_tokens=MAX_NEW, feedback=feedback)
        for i, p in enumerate(prompts):
            assert result.tokens[i] == reference(arch, tuple(p)), f"gamma={gamma} row {i}"
        assert len(d.kv.cache.layers) == 2                        # its own k-layer cache
        if feedback == "full":
            assert all(len(r.position_acceptance["ee"]) == r.committed for r in result.records)
    drafted = sum(r.drafted for r in result.records)
    assert 0 < sum(r.accepted for r in result.records) < drafted     # both accepts and rejects happened


@pytest.mark.parametrize("seed", [0, 1])
def test_deeper_exit_accepts_more(arch, seed):
    target = target4(arch, seed)
    engine = SpecEngine(target, {"k1": EarlyExitDrafter(target, 1), "k3": EarlyExitDrafter(target, L - 1)},
                        eos_token_id=1)
    prompts = random_prompts(5, min_len=1, max_len=14, seed=3)
    rate = {}
    for name in ("k1", "k3"):
        recs = engine.generate(prompts, Arm(name, 3), max_new_tokens=MAX_NEW).records
        rate[name] = sum(r.accepted for r in recs) / sum(r.drafted for r in recs)
    assert rate["k3"] > rate["k1"], rate


@pytest.mark.parametrize("sampling", [Sampling(1.0, 1.0), Sampling(0.7, 0.9)], ids=["t1", "t0.7-p0.9"])
def test_sampling_lossless(sampling):
    n_samples = 6000
    target = tiny_model("llama", seed=0, vocab_size=V, logit_scale=4.0, num_layers=3)
    joint = exact_joint(target, sampling)
    engine = SpecEngine(target, {"ee": EarlyExitDrafter(target, 1)}, eos_token_id=[])
    result = engine.generate([PROMPT] * n_samples, Arm("ee", 3), max_new_tokens=N_TOKENS, sampling=sampling, seed=0)
    assert all(len(t) == N_TOKENS for t in result.tokens)
    drafted = sum(r.drafted for r in result.records)
    accepted = sum(r.accepted for r in result.records)
    assert drafted > n_samples and 0 < accepted < drafted
    assert chi2_pvalue(result.tokens, joint) > 1e-3


@pytest.mark.parametrize("k", [0, L, -1, L + 3])
def test_invalid_num_layers(arch, k):
    with pytest.raises(DrafterError, match=rf"\[1, {L - 1}\]") as err:
        EarlyExitDrafter(target4(arch), k)
    assert "\n" not in str(err.value)


def test_registered_by_name():
    d = build("early_exit", target4("llama"), 2)
    assert isinstance(d, EarlyExitDrafter) and d.name == "early_exit" and d.num_layers == 2
    assert EarlyExitDrafter(target4("llama"), 1, name="ee1").name == "ee1"


@pytest.mark.parametrize("sampling", [None, Sampling(0.8, 0.95)], ids=["greedy", "sampling"])
def test_full_information_from_target_features_equals_own_catch_up(sampling):
    """The free path (norm + head on the target's layer-k features) scores every committed
    position exactly like the drafter's own teacher-forced catch-up forward."""
    target = tiny_model("llama", seed=0, num_layers=4)
    prompts = random_prompts(4, min_len=2, max_len=10, seed=4)

    def scores(use_features):
        group = ExitGroup(target)
        pool = {"ee1": EarlyExitDrafter(target, 1, group=group), "ee3": EarlyExitDrafter(target, 3, group=group)}
        if not use_features:
            for d in pool.values():
                d.capabilities = Capabilities()
        out = SpecEngine(target, pool, eos_token_id=1).generate(
            prompts, [Arm("ee1", 3), Arm("ee3", 2)] * 2, max_new_tokens=20, sampling=sampling, seed=3,
            feedback="full")
        return out.tokens, [r.position_acceptance for r in out.records]

    tokens_fast, acc_fast = scores(True)
    tokens_slow, acc_slow = scores(False)
    assert tokens_fast == tokens_slow
    for a, b in zip(acc_fast, acc_slow):
        for name in a:
            assert a[name] == pytest.approx(b[name], abs=1e-5)
