"""EAGLE training code on tiny models: it learns, it resumes exactly, it refuses stale state."""
import copy

import pytest
import torch

from drafters.eagle import EagleDrafter
from drafters.eagle_head import new_eagle_head
from drafters.training.eagle import (
    EagleLossOptions,
    draft_vocabulary,
    eagle_loss,
    extract_features,
    load_shards,
    pack_sequences,
    teacher_forced_top1,
)
from drafters.training.trainer import TrainOptions, train
from specsel import Arm, SpecEngine
from specsel.testing import random_prompts, tiny_model


def setup(tmp_path, n_docs=24):
    target = tiny_model("llama", seed=0, num_layers=2, logit_scale=3.0)
    engine = SpecEngine(target, {}, eos_token_id=[])
    prompts = random_prompts(n_docs, min_len=2, max_len=6, seed=1)
    answers = engine.generate(prompts, Arm.autoregressive(), max_new_tokens=40).tokens   # self-distillation text
    docs = [p + a for p, a in zip(prompts, answers)]
    tokens, valid = pack_sequences(docs, 64)
    shards = extract_features(target, tokens, [target.config.num_hidden_layers], tmp_path / "features",
                              shard_rows=4, progress=False)
    _, features = load_shards(shards)
    return target, docs, tokens, valid, features.float()


def loss_for(head, target, tokens, valid, features):
    rows = target.lm_head.weight.detach()[head.draft_to_target]
    return lambda r, g: eagle_loss(head, rows, tokens[r], features[r], valid[r], generator=g)


def test_head_learns_the_target_and_drafts_losslessly(tmp_path):
    target, docs, tokens, valid, features = setup(tmp_path)
    head = new_eagle_head(target, 1, draft_vocabulary(docs, 96, 128), seed=0)
    untrained = copy.deepcopy(head)
    rows = target.lm_head.weight.detach()[head.draft_to_target]
    before = teacher_forced_top1(head, rows, tokens, features, valid)
    train(head, loss_for(head, target, tokens, valid, features), len(tokens),
          TrainOptions(steps=150, batch_size=4, lr=3e-3, save_every=1000, progress=False),
          checkpoint_dir=tmp_path / "ckpt")
    after = teacher_forced_top1(head, rows, tokens, features, valid)
    assert after > max(0.5, before + 0.3), (before, after)
    engine = SpecEngine(target, {"eagle": EagleDrafter(target, head), "untrained": EagleDrafter(target, untrained)},
                        eos_token_id=[])
    prompts = random_prompts(24, min_len=2, max_len=6, seed=1)      # the prompts of its training text
    ar = engine.generate(prompts, Arm.autoregressive(), max_new_tokens=30)
    mat = {}
    for name in ("eagle", "untrained"):
        spec = engine.generate(prompts, Arm(name, 4), max_new_tokens=30)
        assert spec.tokens == ar.tokens
        mat[name] = sum(r.committed for r in spec.records) / len(spec.records)
    assert mat["eagle"] > mat["untrained"] + 0.2, mat


def test_interrupted_training_resumes_to_the_same_weights(tmp_path):
    target, docs, tokens, valid, features = setup(tmp_path, n_docs=8)

    def run(ckpt, stop_at=None):
        head = new_eagle_head(target, 1, seed=0)
        loss = loss_for(head, target, tokens, valid, features)
        calls = {"n": 0}

        def interrupted(r, g):
            calls["n"] += 1
            if stop_at is not None and calls["n"] > stop_at:
                raise KeyboardInterrupt
            return loss(r, g)
        train(head, interrupted, len(tokens),
              TrainOptions(steps=12, batch_size=2, lr=1e-3, save_every=4, progress=False), checkpoint_dir=ckpt)
        return head

    straight = run(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", stop_at=6)                 # killed after step 6; steps 1-4 are saved
    resumed = run(tmp_path / "b")
    for (n, p), (_, q) in zip(straight.named_parameters(), resumed.named_parameters()):
        torch.testing.assert_close(p, q, msg=n)


def test_stale_checkpoint_is_refused(tmp_path):
    target, docs, tokens, valid, features = setup(tmp_path, n_docs=8)
    head = new_eagle_head(target, 1, seed=0)
    loss = loss_for(head, target, tokens, valid, features)
    train(head, loss, len(tokens),
          TrainOptions(steps=2, batch_size=2, lr=1e-3, progress=False, fingerprint={"tokens": 1}),
          checkpoint_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="other settings or data: delete it"):
        train(head, loss, len(tokens),
              TrainOptions(steps=2, batch_size=2, lr=1e-3, progress=False, fingerprint={"tokens": 2}),
              checkpoint_dir=tmp_path / "c")


def test_feature_shards_are_reused(tmp_path):
    target = tiny_model("llama", seed=0)
    tokens, _ = pack_sequences([[3, 4, 5, 6]] * 10, 8)
    first = extract_features(target, tokens, [2], tmp_path, shard_rows=2, progress=False)
    stamps = [p.stat().st_mtime_ns for p in first]
    again = extract_features(target, tokens, [2], tmp_path, shard_rows=2, progress=False)
    assert again == first and [p.stat().st_mtime_ns for p in again] == stamps
    _, feats = load_shards(first)
    ref = target(tokens, output_hidden_states=True).hidden_states[2]
    torch.testing.assert_close(feats.float(), ref, atol=2e-3, rtol=2e-3)     # stored as float16


def test_draft_vocabulary_keeps_frequent_and_special_tokens():
    vocab = draft_vocabulary([[5, 5, 5, 7, 7, 9], [5, 7, 11]], size=3, vocab_size=20, always=[1])
    assert vocab.tolist() == [1, 5, 7]


def test_greedy_generator_matches_the_engine_and_cuts_at_eos():
    """Self-distillation answers from batched left-padded generate() are the target's own greedy
    continuations: token for token what the engine's autoregressive path gives, cut after EOS."""
    from types import SimpleNamespace

    from drafters.training.eagle import greedy_generator
    target = tiny_model("llama", seed=0, num_layers=2, logit_scale=3.0)
    prompts = random_prompts(6, min_len=2, max_len=12, seed=3)
    free = SpecEngine(target, {}, eos_token_id=[]).generate(prompts, Arm.autoregressive(), max_new_tokens=20).tokens
    eos = free[0][5]                                  # a token the first answer emits: it must stop there
    tokenizer = SimpleNamespace(eos_token_id=eos, pad_token_id=0)
    got = greedy_generator(target, tokenizer)(prompts, 20)
    want = SpecEngine(target, {}, eos_token_id=eos).generate(prompts, Arm.autoregressive(), max_new_tokens=20).tokens
    assert [list(g) for g in got] == [list(w) for w in want]
    assert got[0][-1] == eos and len(got[0]) <= 6


def test_unrolled_step_sees_what_the_second_draft_step_sees(tmp_path):
    """The masked [true | own-output] forward of the unrolled loss equals, position by position,
    a head run on the true pairs before j and then the pair (t_{j+1}, h_{j-1}) at position j."""
    from drafters.training.eagle import unrolled_mask
    target, docs, tokens, valid, features = setup(tmp_path, n_docs=4)
    head = new_eagle_head(target, 1, None, seed=0).float().eval()
    t, f = tokens[:1, 1:13], features[:1, :12]
    n = t.shape[1]
    with torch.no_grad():
        first = head(input_ids=t, features=f)
        own = torch.cat([torch.zeros_like(first.hidden[:, :1]), first.hidden[:, :-1]], dim=1)
        pos = torch.arange(n)
        both = head(input_ids=torch.cat([t, t], 1), features=torch.cat([f, own], 1),
                    attention_mask=unrolled_mask(n)[None, None], position_ids=torch.cat([pos, pos])[None])
        torch.testing.assert_close(both.hidden[:, :n], first.hidden, rtol=1e-4, atol=1e-5)
        for j in (1, 5, n - 1):
            feats = torch.cat([f[:, :j], first.hidden[:, j - 1: j]], dim=1)
            step = head(input_ids=t[:, : j + 1], features=feats)
            torch.testing.assert_close(both.hidden[:, n + j], step.hidden[:, j], rtol=1e-4, atol=1e-5)


def test_unrolled_loss_trains_and_reports_the_second_step(tmp_path):
    target, docs, tokens, valid, features = setup(tmp_path, n_docs=8)
    head = new_eagle_head(target, 1, None, seed=0).float()
    rows = target.lm_head.weight.detach()[head.draft_to_target]
    loss, stats = eagle_loss(head, rows, tokens[:2], features[:2], valid[:2], EagleLossOptions(unroll_weight=0.5))
    plain, _ = eagle_loss(head, rows, tokens[:2], features[:2], valid[:2], EagleLossOptions(noise=0.0))
    assert "top1_step2" in stats and loss > plain * 0.99
    loss.backward()
    assert head.fc.weight.grad is not None and torch.isfinite(head.fc.weight.grad).all()
