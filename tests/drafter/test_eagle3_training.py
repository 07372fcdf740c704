"""EAGLE-3 training on tiny models: the training-time test sees what a draft chain sees, a head
trained with it drafts losslessly (greedy and sampling) through its reduced vocabulary, and a
restricted vocabulary keeps drafts inside it."""
import copy

import pytest
import torch
from distribution_checks import N_SAMPLES, N_TOKENS, PROMPT, chi2_pvalue, exact_joint

from drafters.eagle import EagleDrafter
from drafters.eagle_head import new_eagle_head
from drafters.training.corpus import pack_with_features
from drafters.training.eagle import draft_vocabulary
from drafters.training.eagle3 import (
    Eagle3LossOptions,
    eagle3_loss,
    feature_layers,
    heldout_top1,
    init_from_target,
    restrict_vocabulary,
    token_counts,
    ttt_forward,
    ttt_mask,
)
from drafters.training.selfdistill import greedy_with_features
from drafters.training.trainer import TrainOptions, train
from specsel import Arm, Sampling, SpecEngine
from specsel.testing import random_prompts, tiny_model


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and lose much when the machine is busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def corpus(target, n_docs=24, answer=40, seed=1):
    """Self-distilled documents of the tiny target with the features EAGLE-3 trains on."""
    prompts = random_prompts(n_docs, min_len=2, max_len=6, seed=seed)
    layers = feature_layers(target.config.num_hidden_layers)
    answers, feats = greedy_with_features(target, -1, 0, layers)(prompts, answer)
    docs = [p + a for p, a in zip(prompts, answers)]
    return prompts, docs, [len(p) for p in prompts], feats


def test_ttt_mask_blocks():
    m = ttt_mask(5, 3).int()
    assert m.shape == (5, 15)
    # position 4 at step 3: true pairs 0..2, its step-2 pair at 3, itself (step 3) at 4
    assert m[4].tolist() == [1, 1, 1, 0, 0] + [0, 0, 0, 1, 0] + [0, 0, 0, 0, 1]
    assert ttt_mask(4, 1).equal(torch.ones(4, 4).tril().bool())


def test_each_unrolled_step_equals_that_step_of_a_draft_chain():
    """Step k of the training-time test at position i is the k-th draft step of the chain that
    starts after true pair i-k+1: the head fed its own outputs through its own cache."""
    from transformers import DynamicCache
    target = tiny_model("llama", seed=0, num_layers=4, logit_scale=3.0)
    _, docs, _, feats = corpus(target, n_docs=1, answer=20)
    H = target.config.hidden_size
    head = new_eagle_head(target, 3, None, seed=0).float().eval()
    t = torch.tensor([docs[0]])
    fused = feats[0][None, :, : 3 * H].float()
    x_tokens, x_fused = t[:, 1:-1], fused[:, :-2]
    with torch.no_grad():
        outs = list(ttt_forward(head, x_tokens, x_fused, steps=3))
        for s in (1, 4, 9):                      # the chain's first draft comes from true pair s
            cache = DynamicCache()
            out = head(input_ids=x_tokens[:, : s + 1], features=x_fused[:, : s + 1], past_key_values=cache,
                       use_cache=True)
            torch.testing.assert_close(out.logits[:, -1], outs[0].logits[:, s], rtol=1e-4, atol=1e-4)
            h = out.hidden[:, -1:]
            for k in (2, 3):
                i = s + k - 1
                out = head(input_ids=x_tokens[:, i: i + 1], features=h, position_ids=torch.tensor([[i]]),
                           past_key_values=cache, use_cache=True)
                torch.testing.assert_close(out.logits[:, 0], outs[k - 1].logits[:, i], rtol=1e-4, atol=1e-4)
                h = out.hidden


def trained_head(target, ckpt, steps=150, vocab=96):
    """(prompts, docs, head trained `steps` steps, untrained copy, (held-out top-1 before, after))."""
    prompts, docs, plens, feats = corpus(target)
    tokens, valid, answer, features = pack_with_features(docs, plens, feats, 48)
    head = init_from_target(new_eagle_head(target, 3, draft_vocabulary(docs, vocab, 128), seed=0).float(), target)
    rows = target.lm_head.weight.detach()[head.draft_to_target]
    untrained = copy.deepcopy(head).eval()
    before = heldout_top1(head, rows, tokens, features, valid, answer, steps=2)

    def loss(r, g):
        return eagle3_loss(head, rows, tokens[r], features[r].float(), valid[r], answer[r],
                           Eagle3LossOptions(steps=2), generator=g)
    train(head, loss, len(tokens), TrainOptions(steps=steps, batch_size=4, lr=3e-3, save_every=10_000, progress=False),
          checkpoint_dir=ckpt)
    after = heldout_top1(head, rows, tokens, features, valid, answer, steps=2)
    return prompts, docs, head.eval(), untrained, (before, after)


def test_eagle3_head_learns_and_drafts_losslessly_through_its_small_vocabulary(tmp_path):
    from drafters.eagle_head import load_eagle_head
    target = tiny_model("llama", seed=0, num_layers=4, logit_scale=3.0)
    prompts, docs, head, untrained, (before, after) = trained_head(target, tmp_path / "ckpt")
    assert after["top1"] > before["top1"] + 0.3 and after["top1_step2"] > before["top1_step2"] + 0.2, (before, after)
    head.save(tmp_path / "head", dtype=torch.float16)
    shipped = load_eagle_head(tmp_path / "head", target)
    assert shipped.version == 3 and shipped.draft_vocab_size == 96
    engine = SpecEngine(target, {"eagle3": EagleDrafter(target, shipped), "untrained": EagleDrafter(target, untrained)},
                        eos_token_id=[])
    ar = engine.generate(prompts, Arm.autoregressive(), max_new_tokens=30)
    mat = {}
    for name in ("eagle3", "untrained"):
        spec = engine.generate(prompts, Arm(name, 4), max_new_tokens=30)
        assert spec.tokens == ar.tokens                      # greedy: the target's own output
        mat[name] = sum(r.committed for r in spec.records) / len(spec.records)
    assert mat["eagle3"] > mat["untrained"] + 0.3, mat


def test_restricted_vocabulary_drafts_only_its_most_frequent_tokens_and_stays_lossless(tmp_path):
    target = tiny_model("llama", seed=0, num_layers=4, logit_scale=3.0)
    prompts, docs, head, _, _ = trained_head(target, tmp_path / "ckpt", steps=60)
    counts = token_counts(docs, 128)
    small = restrict_vocabulary(head, 16, counts)
    allowed = set(small.draft_to_target.tolist())
    ranked = head.draft_to_target[counts[head.draft_to_target].topk(16).indices]
    assert small.draft_vocab_size == 16 and allowed == set(ranked.tolist())
    with torch.no_grad():       # its logits are the big head's on those tokens
        h = torch.randn(3, target.config.hidden_size)
        keep = torch.isin(head.draft_to_target, small.draft_to_target)
        torch.testing.assert_close(small.logits(h), head.logits(h)[:, keep])
    drafter = EagleDrafter(target, small)
    engine = SpecEngine(target, {"small": drafter}, eos_token_id=[])
    ar = engine.generate(prompts, Arm.autoregressive(), max_new_tokens=20)
    seen = []
    propose = drafter.family.propose_many

    def spy(ctx, asks):
        out = propose(ctx, asks)
        seen.extend(t for p in out for row, n in zip(p.tokens.tolist(), p.lengths.tolist()) for t in row[:n])
        return out
    drafter.family.propose_many = spy
    spec = engine.generate(prompts, Arm("small", 4), max_new_tokens=20)
    assert spec.tokens == ar.tokens and seen and set(seen) <= allowed


@pytest.mark.parametrize("sampling", [Sampling(1.0, 1.0), Sampling(0.7, 0.9)], ids=["t1", "t0.7-p0.9"])
def test_sampling_through_a_trained_small_vocabulary_keeps_the_target_distribution(sampling):
    """A trained EAGLE-3 head over 4 of the 6 tokens: its draft distribution is zero outside
    the draft vocabulary, and speculative sampling still draws exactly from the target
    (chi-square against the enumerated joint)."""
    from distribution_checks import V
    target = tiny_model("llama", seed=0, vocab_size=V, logit_scale=4.0)
    prompts = [PROMPT] * 8
    answers, feats = greedy_with_features(target, -1, 0, feature_layers(target.config.num_hidden_layers))(prompts, 12)
    docs = [p + a for p, a in zip(prompts, answers)]
    tokens, valid, answer, features = pack_with_features(docs, [len(PROMPT)] * 8, feats, 17)
    head = init_from_target(new_eagle_head(target, 3, torch.tensor([0, 2, 3, 5]), seed=1).float(), target)
    rows = target.lm_head.weight.detach()[head.draft_to_target]
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    for _ in range(40):
        loss, _ = eagle3_loss(head, rows, tokens, features.float(), valid, answer, Eagle3LossOptions(steps=2))
        opt.zero_grad()
        loss.backward()
        opt.step()
    engine = SpecEngine(target, {"eagle3": EagleDrafter(target, head.eval())}, eos_token_id=[])
    out = engine.generate([PROMPT] * N_SAMPLES, Arm("eagle3", 3), max_new_tokens=N_TOKENS, sampling=sampling, seed=0)
    drafted = sum(r.drafted for r in out.records)
    accepted = sum(r.accepted for r in out.records)
    assert drafted > N_SAMPLES and 0 < accepted < drafted      # drafts really tested, some rejected
    assert chi2_pvalue(out.tokens, exact_joint(target, sampling)) > 1e-3
