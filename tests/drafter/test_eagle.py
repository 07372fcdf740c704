"""EAGLE heads: losslessness in the engine, feature alignment, checkpoint layouts, errors."""
import pytest
import torch

from drafters import DrafterError
from drafters.eagle import EagleDrafter
from drafters.eagle_head import load_eagle_head, new_eagle_head
from specsel import Arm, SpecEngine
from specsel.testing import random_prompts, tiny_model

from conftest import hf_greedy

MAX_NEW = 20


def target_of(arch, layers=4):
    return tiny_model(arch, seed=0, num_layers=layers)


def reduced_tokens(vocab=128, keep=48, seed=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(vocab, generator=g)[:keep]


def heads(target):
    return {"v1": new_eagle_head(target, 1, seed=1),
            "v1_reduced": new_eagle_head(target, 1, reduced_tokens(), seed=2),
            "v3_reduced": new_eagle_head(target, 3, reduced_tokens(), seed=3)}


@pytest.fixture(params=["llama", "qwen2"])
def arch(request):
    return request.param


def test_greedy_output_equals_target(arch):
    target = target_of(arch)
    pool = {name: EagleDrafter(target, head) for name, head in heads(target).items()}
    pool["v1_sure"] = EagleDrafter(target, heads(target)["v1_reduced"], min_confidence=0.0242,   # cuts some drafts
                                   projection_dtype=None)                                        # (its median)
    pool["v3_bf16"] = EagleDrafter(target, heads(target)["v3_reduced"], projection_dtype=torch.bfloat16)
    engine = SpecEngine(target, pool, eos_token_id=1)
    prompts = random_prompts(3, min_len=1, max_len=10, seed=4)
    expected = [hf_greedy(target, p, MAX_NEW) for p in prompts]
    for name in pool:
        for gamma in (1, 3):
            for feedback in ("bandit", "full"):
                result = engine.generate(prompts, Arm(name, gamma), max_new_tokens=MAX_NEW, feedback=feedback)
                assert result.tokens == expected, f"{name}@{gamma} {feedback}"
    mixed = [Arm("v1", 2), Arm("v3_reduced", 4), Arm.autoregressive()]
    assert engine.generate(prompts, mixed, max_new_tokens=MAX_NEW).tokens == expected
    drafted = [r.drafted for r in engine.generate(prompts, Arm("v1_sure", 4), max_new_tokens=MAX_NEW).records]
    assert 0 in drafted and max(drafted) > 0          # the threshold cut some drafts, not all


def test_confidence_threshold_cuts_drafts_and_saves_head_forwards():
    target = target_of("llama")
    head = heads(target)["v1_reduced"]
    calls = {"n": 0}
    hook = head.register_forward_hook(lambda *a: calls.__setitem__("n", calls["n"] + 1))
    prompts = random_prompts(2, min_len=3, max_len=8, seed=6)
    counts = {}
    for threshold in (0.0, 0.99):
        calls["n"] = 0
        engine = SpecEngine(target, {"e": EagleDrafter(target, head, min_confidence=threshold)}, eos_token_id=[])
        result = engine.generate(prompts, Arm("e", 4), max_new_tokens=MAX_NEW)
        assert result.tokens == [hf_greedy(target, p, MAX_NEW, eos_token_id=None) for p in prompts]
        counts[threshold] = (calls["n"], sum(r.drafted for r in result.records))
    assert counts[0.99][1] == 0 and counts[0.0][1] > 0            # a random head is never 99% sure
    assert counts[0.99][0] < counts[0.0][0]                        # and no draft-step forwards were run
    hook.remove()
    with pytest.raises(DrafterError, match="min_confidence"):
        EagleDrafter(target, head, min_confidence=1.5)


@torch.no_grad()
def offline_predictions(target, head, tokens):
    """Teacher-forced head predictions over a whole sequence: out[i] predicts tokens[i + 2]."""
    x = torch.tensor([tokens])
    hs = target(x, output_hidden_states=True).hidden_states
    drafter = EagleDrafter(target, head)
    feats = torch.cat([hs[k] for k in drafter.capabilities.feature_layers], dim=-1)
    out = head(input_ids=x[:, 1:], features=feats[:, :-1])
    return head.draft_to_target[out.logits[0].argmax(-1)].tolist()


@pytest.mark.parametrize("version", ["v1_reduced", "v3_reduced"])
def test_full_information_predictions_are_teacher_forced(arch, version, monkeypatch):
    """The prediction reported for committed position j is head(f_{j-2}, t_{j-1}) with the
    verify forwards' true features, whatever arm was played (catch-up alignment is exact)."""
    target = target_of(arch)
    head = heads(target)[version]
    seen = []   # (row position j, predicted token) per committed position, rows in prompt order
    original = EagleDrafter.score

    def spy(self, ctx, rows):
        pred = original(self, ctx, rows)
        if pred is not None:
            for i in range(len(rows)):
                for c, j in enumerate(range(int(ctx.prev_lens[i]), int(ctx.seq_lens[i]))):
                    seen.append((int(ctx.seqs[i, 0]), len(seen), j, int(pred.tokens[i, c])))
        return pred

    monkeypatch.setattr(EagleDrafter, "score", spy)
    engine = SpecEngine(target, {"eagle": EagleDrafter(target, head)}, eos_token_id=[])
    prompts = [p for p in random_prompts(6, min_len=3, max_len=9, seed=11)]
    prompts = [p for p in {p[0]: p for p in prompts}.values()][:2]        # distinct first tokens
    for arms in (Arm.autoregressive(), Arm("eagle", 3)):
        seen.clear()
        result = engine.generate(prompts, arms, max_new_tokens=MAX_NEW, feedback="full")
        for row, prompt in enumerate(prompts):
            seq = prompt + result.tokens[row]
            preds = offline_predictions(target, head, seq)
            got = [(j, tok) for first, _, j, tok in seen if first == prompt[0]]
            assert [j for j, _ in got] == list(range(len(prompt), len(seq)))
            assert [tok for _, tok in got] == [preds[j - 2] for j in range(len(prompt), len(seq))]


@pytest.mark.parametrize("version", ["v1", "v1_reduced", "v3_reduced"])
def test_low_precision_projection(version, monkeypatch):
    """projection_dtype: the head's logits from a bf16 copy of the projection, only without
    gradients (training keeps full precision); 'auto' picks bf16 only where the CPU has it."""
    target = target_of("llama")
    head = heads(target)[version]
    hidden = torch.randn(5, 64)
    with torch.no_grad():
        full = head.logits(hidden)
        head.projection_dtype = torch.bfloat16
        low = head.logits(hidden)
    assert low.dtype == full.dtype and not torch.equal(low, full)
    torch.testing.assert_close(low, full, atol=0.05, rtol=0.05)
    assert torch.equal(head.logits(hidden).detach(), full)            # gradients on: full precision

    from drafters.eagle_head import resolve_projection_dtype
    head = heads(target)[version]
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert resolve_projection_dtype("auto", head) == torch.bfloat16
    assert resolve_projection_dtype("auto", heads(target)[version].to(torch.float16)) is None
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert resolve_projection_dtype("auto", head) is None
    assert resolve_projection_dtype(None, head) is None
    with pytest.raises(DrafterError, match="projection_dtype must be"):
        EagleDrafter(target, head, projection_dtype="bf16")


def test_first_draft_matches_its_prediction(arch):
    """The played head's first draft token is its teacher-forced prediction of that position."""
    target = target_of(arch)
    engine = SpecEngine(target, {"eagle": EagleDrafter(target, heads(target)["v1"])}, eos_token_id=[])
    result = engine.generate(random_prompts(3, min_len=2, seed=5), Arm("eagle", 1), max_new_tokens=MAX_NEW,
                             feedback="full")
    for r in result.records:
        assert r.accepted == int(r.position_acceptance["eagle"][0])


@pytest.mark.parametrize("version", ["v1", "v1_reduced", "v3_reduced"])
def test_save_and_load_round_trip(tmp_path, version):
    target = target_of("llama")
    head = heads(target)[version]
    head.save(tmp_path)
    loaded = load_eagle_head(tmp_path, target)
    x = torch.randint(0, 128, (2, 6))
    f = torch.randn(2, 6, head.feature_size)
    torch.testing.assert_close(loaded(input_ids=x, features=f).logits, head(input_ids=x, features=f).logits)
    assert torch.equal(loaded.draft_to_target, head.draft_to_target)


def test_loads_published_eagle1_layout(tmp_path):
    """EAGLE-1/2 checkpoints: pytorch_model.bin with fc.*, layers.0.* and a copy of the embedding."""
    target = target_of("llama")
    head = new_eagle_head(target, 1, seed=4)
    state = {k.replace("layer.", "layers.0.", 1): v for k, v in head.state_dict().items()
             if k not in ("d2t",)}
    state["embed_tokens.weight"] = target.model.embed_tokens.weight.clone()
    torch.save(state, tmp_path / "pytorch_model.bin")
    head.config.to_json_file(tmp_path / "config.json")
    loaded = load_eagle_head(tmp_path, target)
    x, f = torch.randint(0, 128, (1, 5)), torch.randn(1, 5, 64)
    torch.testing.assert_close(loaded(input_ids=x, features=f).logits, head(input_ids=x, features=f).logits)


def test_loads_published_eagle3_layout(tmp_path):
    """EAGLE-3: midlayer.*, norm, own lm_head over the draft vocabulary, d2t offsets and t2d."""
    target = target_of("llama")
    head = new_eagle_head(target, 3, reduced_tokens(keep=32), seed=6)
    state = {}
    for k, v in head.state_dict().items():
        k = "midlayer." + k[len("layer."):] if k.startswith("layer.") else k
        state["midlayer.hidden_norm.weight" if k == "hidden_norm.weight" else k] = v
    t2d = torch.zeros(128, dtype=torch.bool)
    t2d[head.draft_to_target] = True
    state["t2d"] = t2d
    from safetensors.torch import save_file
    save_file(state, tmp_path / "model.safetensors")
    head.config.to_json_file(tmp_path / "config.json")
    loaded = load_eagle_head(tmp_path, target)
    assert loaded.version == 3 and loaded.draft_vocab_size == 32
    x, f = torch.randint(0, 128, (1, 5)), torch.randn(1, 5, 3 * 64)
    torch.testing.assert_close(loaded(input_ids=x, features=f).logits, head(input_ids=x, features=f).logits)


def test_errors_name_the_fix(tmp_path):
    target = target_of("llama")
    with pytest.raises(DrafterError, match="config.json"):
        load_eagle_head(tmp_path, target)
    new_eagle_head(tiny_model("llama", hidden_size=32), 1).save(tmp_path / "other")
    with pytest.raises(DrafterError, match="hidden_size=32 but the target has 64"):
        load_eagle_head(tmp_path / "other", target)
    with pytest.raises(DrafterError, match="LLaMA and Qwen2"):
        from drafters.eagle_head import head_config
        head_config(type("C", (), {"model_type": "gpt2"})())


def test_deferred_scoring_gives_the_same_records(arch):
    """score_every=k scores EAGLE heads' committed positions k rounds at a time: the same
    outputs and the same per-position acceptance as scoring every round (greedy)."""
    from drafters import NgramDrafter
    target = target_of(arch)
    pool = {"ngram": NgramDrafter(), **{name: EagleDrafter(target, h) for name, h in heads(target).items()}}
    engine = SpecEngine(target, pool, eos_token_id=1)
    prompts = random_prompts(4, min_len=3, max_len=9, seed=5)
    arms = [Arm("v1", 3), Arm("ngram", 2), Arm("v3_reduced", 4), Arm.autoregressive()]
    plain = engine.generate(prompts, arms, max_new_tokens=MAX_NEW, feedback="full")
    for k in (2, 5):
        late = engine.generate(prompts, arms, max_new_tokens=MAX_NEW, feedback="full", score_every=k)
        assert late.tokens == plain.tokens
        assert [(r.row, r.round, r.position_acceptance) for r in late.records] == \
               [(r.row, r.round, r.position_acceptance) for r in plain.records]


def test_deferred_scoring_under_a_learner_stays_lossless(arch):
    from drafters import NgramDrafter
    from specsel.core.arms import arm_grid
    from specsel.learners.policy import LearnerPolicy
    target = target_of(arch)
    pool = {"ngram": NgramDrafter(), **{name: EagleDrafter(target, h) for name, h in heads(target).items()}}
    engine = SpecEngine(target, pool, eos_token_id=1)
    prompts = random_prompts(3, min_len=3, max_len=9, seed=6)
    updates = {}
    for k in (1, 4):
        policy = LearnerPolicy("hedgespec", arm_grid(list(pool), [1, 3]), list(pool))
        out = engine.generate(prompts, policy, max_new_tokens=MAX_NEW, feedback="full", score_every=k)
        assert out.tokens == [hf_greedy(target, p, MAX_NEW) for p in prompts]
        assert all(set(r.position_acceptance) == set(pool) for r in out.records)
        updates[k] = [policy.routers[r].learner.t for r in range(len(prompts))]
    assert updates[4] == updates[1] and min(updates[1]) > 0    # late, but every position's feedback arrives
    with pytest.raises(ValueError, match="score_every"):
        engine.generate(prompts, policy, max_new_tokens=4, feedback="full", score_every=0)


def test_replay_with_score_every_reproduces_a_deferred_live_run(arch):
    """Live HedgeSpec under deferred scoring (score_every=k) plays exactly what simulate(...,
    score_every=k) plays on its records. At gamma 1 an EAGLE draft is its teacher-forced
    prediction, so the replay is exact. The pool starts on an untrained head and holds the
    target itself as a drafter ("exact", always accepted): without the delay the replay leaves
    the head sooner than the live run did."""
    from drafters import ModelDrafter, NgramDrafter
    from evaluators.records import to_dict
    from specsel.core.arms import arm_grid, arm_pairs
    from specsel.core.seeds import query_seed
    from specsel.learners import HedgeSpec
    from specsel.learners.policy import LearnerPolicy
    from specsel.replay.fullinfo import acceptance_matrix
    from specsel.replay.simulate import simulate
    target = target_of(arch)
    pool = {"v1": EagleDrafter(target, heads(target)["v1"]), "ngram": NgramDrafter(), "exact": ModelDrafter(target)}
    engine = SpecEngine(target, pool, eos_token_id=1)
    arms = arm_grid(list(pool), [1])
    pairs = arm_pairs(arms, list(pool))
    differs = False
    for seed, prompt in enumerate(random_prompts(2, min_len=3, max_len=9, seed=8)):
        for k in (1, 3):
            policy = LearnerPolicy("hedgespec", arms, list(pool), seed=seed)
            out = engine.generate([prompt], policy, max_new_tokens=MAX_NEW, feedback="full", score_every=k)
            live = sorted(out.records, key=lambda r: r.round)
            matrix = acceptance_matrix([to_dict(r) for r in live], list(pool))
            def replay(every):
                learner = HedgeSpec(len(arms), reward_range=policy.reward_range, seed=query_seed(seed, 0))
                return [arms[r.arm] for r in simulate(learner, matrix, pairs, score_every=every)]
            assert replay(k) == [Arm(r.drafter, r.gamma) for r in live]
            differs |= k > 1 and replay(1) != replay(k)
    assert differs                                  # the delay is real: ignoring it replays other choices


def test_scoring_a_subset_keeps_outputs_and_the_scored_records(arch):
    """A policy that asks for some drafters' acceptance gets exactly those, equal to what full
    scoring records; the others are skipped (their feeds keep only the last top-1); output unchanged."""
    from drafters import NgramDrafter
    from specsel.core.policy import FixedArms
    target = target_of(arch)
    pool = {"ngram": NgramDrafter(), **{name: EagleDrafter(target, h) for name, h in heads(target).items()}}
    engine = SpecEngine(target, pool, eos_token_id=1)
    prompts = random_prompts(4, min_len=3, max_len=9, seed=7)
    arms = [Arm("v1", 3), Arm("ngram", 2), Arm("v3_reduced", 4), Arm("v1", 1)]

    class Some(FixedArms):
        def __init__(self, wanted):
            super().__init__(arms, len(prompts))
            self.wanted, self.windows = wanted, 0

        def scored_drafters(self):
            self.windows += 1
            return self.wanted[self.windows % len(self.wanted)]

    for k in (1, 3):
        plain = engine.generate(prompts, arms, max_new_tokens=MAX_NEW, feedback="full", score_every=k)
        policy = Some([["v1", "ngram"], [], ["v3_reduced", "v1_reduced"]])
        some = engine.generate(prompts, policy, max_new_tokens=MAX_NEW, feedback="full", score_every=k)
        assert some.tokens == plain.tokens == [hf_greedy(target, p, MAX_NEW) for p in prompts]
        seen = set()
        for a, b in zip(some.records, plain.records):
            assert set(a.position_acceptance) <= set(pool)
            seen |= set(a.position_acceptance)
            assert all(a.position_acceptance[d] == b.position_acceptance[d] for d in a.position_acceptance)
        assert seen == {"v1", "ngram", "v3_reduced", "v1_reduced"} and policy.windows > 2
        if k == 1:
            assert any(r.position_acceptance == {} for r in some.records)


def test_bandit_feeds_project_only_the_last_pair():
    """Bandit feedback never asks for scores: when a head catches up on several pairs (the
    prompts, of different lengths), its output projection sees the last pair of each row only."""
    target = target_of("llama")
    head = heads(target)["v1"]
    engine = SpecEngine(target, {"v1": EagleDrafter(target, head)}, eos_token_id=1)
    prompts = random_prompts(2, min_len=5, max_len=8, seed=8)
    assert len({len(p) for p in prompts}) == 2
    shapes, project = [], head.logits
    head.logits = lambda hidden: shapes.append(hidden.shape[:-1]) or project(hidden)
    out = engine.generate(prompts, Arm("v1", 3), max_new_tokens=MAX_NEW)
    assert out.tokens == [hf_greedy(target, p, MAX_NEW) for p in prompts]
    assert shapes and all(s[1:] in ((), (1,)) for s in shapes)    # [rows] or [rows, 1]: one column per row


def test_a_first_feed_of_long_ragged_prompts_runs_in_length_groups_and_changes_nothing(monkeypatch):
    """The head's first feed (whole prompts) in length groups: same tokens and same scores as one padded forward."""
    import drafters.eagle_family as eagle_module
    target = target_of("llama")
    head = heads(target)["v1"]
    prompts = [p[:n] for p, n in zip(random_prompts(3, min_len=90, max_len=90, seed=7), (4, 45, 90))]
    expected = [hf_greedy(target, p, MAX_NEW) for p in prompts]
    outputs = {}
    for grouped in (True, False):
        monkeypatch.setattr(eagle_module, "GROUPED_FEED_MIN", 32 if grouped else 10**9)
        engine = SpecEngine(target, {"v1": EagleDrafter(target, head)}, eos_token_id=1)
        result = engine.generate(prompts, Arm("v1", 3), max_new_tokens=MAX_NEW, feedback="full")
        assert result.tokens == expected
        outputs[grouped] = [r.position_acceptance for r in result.records]
    assert outputs[True] == outputs[False]


@pytest.mark.parametrize("version", ["v1_reduced", "v3_reduced"])
def test_a_prompt_window_feeds_the_last_pairs_only_and_stays_lossless(version, monkeypatch):
    """prompt_window=W: the head is fed only a prompt's last W pairs. Its predictions are then
    those of the head run over those pairs alone (positions from 0; features from the whole
    sequence), the output is still the target's, and a window no prompt reaches changes nothing."""
    target = target_of("llama")
    head = heads(target)[version]
    prompts = [p[:n] for p, n in zip(random_prompts(2, min_len=30, max_len=30, seed=5), (30, 3))]
    expected = [hf_greedy(target, p, MAX_NEW, eos_token_id=None) for p in prompts]
    records = {}
    for window in (None, 40, 6):
        engine = SpecEngine(target, {"e": EagleDrafter(target, head, prompt_window=window)}, eos_token_id=[])
        for arms in (Arm("e", 3), Arm.autoregressive()):
            result = engine.generate(prompts, arms, max_new_tokens=MAX_NEW, feedback="full")
            assert result.tokens == expected, (window, arms)
            records[window, str(arms)] = [(r.accepted, r.position_acceptance) for r in result.records]
    assert records[None, "e@3"] == records[40, "e@3"]            # no prompt is longer than 40 tokens
    # sampling, full information: scores come from the windowed cache too (the _predictions path)
    from specsel import Sampling
    engine = SpecEngine(target, {"e": EagleDrafter(target, head, prompt_window=6)}, eos_token_id=[])
    sampled = engine.generate(prompts, Arm("e", 3), max_new_tokens=MAX_NEW, feedback="full",
                              sampling=Sampling(1.0, 1.0), seed=1)
    scores = [a for r in sampled.records for a in r.position_acceptance["e"]]
    assert len(scores) == sum(len(t) for t in sampled.tokens) and all(0.0 <= a <= 1.0 + 1e-6 for a in scores)
    assert any(a > 0 for a in scores)                            # positions after the window's pairs are scored
    # teacher-forced predictions with the window: the head over pairs s .. of the long prompt's sequence
    drafter = EagleDrafter(target, head, prompt_window=6)
    seen = []
    original = EagleDrafter.score_since

    def spy(self, ctx, rows, since):
        pred = original(self, ctx, rows, since)
        seen.extend((j, int(t)) for j, t in zip(range(int(since[0]), int(ctx.seq_lens[0])), pred.tokens[0].tolist()))
        return pred

    monkeypatch.setattr(EagleDrafter, "score_since", spy)
    engine = SpecEngine(target, {"e": drafter}, eos_token_id=[])
    out = engine.generate(prompts[:1], Arm.autoregressive(), max_new_tokens=MAX_NEW, feedback="full")
    seq = prompts[0] + out.tokens[0]
    s = len(prompts[0]) - 1 - 6                                 # the first pair fed
    with torch.no_grad():
        x = torch.tensor([seq])
        hs = target(x, output_hidden_states=True).hidden_states
        feats = torch.cat([hs[k] for k in drafter.capabilities.feature_layers], dim=-1)
        logits = head(input_ids=x[:, s + 1:], features=feats[:, s:-1]).logits[0]
    offline = head.draft_to_target[logits.argmax(-1)].tolist()     # offline[c] predicts position s + c + 2
    assert seen and all(tok == offline[j - 2 - s] for j, tok in seen)
    with pytest.raises(DrafterError, match="prompt_window"):
        EagleDrafter(target, head, prompt_window=0)
