"""Bad input to SpecEngine fails early with a clear one-line error that names the fix;
edge-case input that is valid (one-token prompts) works and stays lossless."""
import functools

import pytest

from drafters import DrafterError, ModelDrafter, NgramDrafter
from specsel import Arm, ArmPolicy, SpecEngine
from specsel.core.drafting import Drafter, Proposal
from specsel.testing import random_prompts, tiny_model

from conftest import hf_greedy, noisy_copy

CONTEXT = 64


@functools.lru_cache(maxsize=None)
def short_target(arch: str = "llama"):
    """A tiny target with a 64-token context (vocab 128, eos 1)."""
    return tiny_model(arch, seed=0, max_position_embeddings=CONTEXT)


@functools.lru_cache(maxsize=None)
def noisy_drafter(arch: str = "llama"):
    return noisy_copy(short_target(arch))


def engine(arch: str = "llama") -> SpecEngine:
    return SpecEngine(short_target(arch), {"ngram": NgramDrafter(), "noisy": ModelDrafter(noisy_drafter(arch))},
                      eos_token_id=1)


def raises(exc_type, *needles):
    """pytest.raises that also checks the message is one line and contains every needle."""
    class _Check:
        def __enter__(self):
            self.ctx = pytest.raises(exc_type)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            swallowed = self.ctx.__exit__(*exc)
            msg = str(self.info.value)
            assert "\n" not in msg.strip(), f"message is not one line: {msg!r}"
            for needle in needles:
                assert needle in msg, f"{needle!r} not in {msg!r}"
            return swallowed
    return _Check()


PROMPT = [5, 6, 7, 8]


# ------------------------------------------------------------------ prompts

def test_no_prompts():
    with raises(ValueError, "no prompts"):
        engine().generate([], Arm("ngram", 2), max_new_tokens=4)


def test_empty_prompt():
    with raises(ValueError, "prompt 1 is empty", "at least one token", "BOS"):
        engine().generate([PROMPT, []], Arm("ngram", 2), max_new_tokens=4)


def test_prompt_longer_than_context():
    with raises(ValueError, "prompt 0", f"context of {CONTEXT}", "shorten the prompt"):
        engine().generate([list(range(2, 2 + CONTEXT + 6))], Arm("ngram", 2), max_new_tokens=4)


@pytest.mark.parametrize("max_new", [5, 40])
def test_prompt_plus_budget_longer_than_context(max_new):
    prompt = [3 + i % 50 for i in range(CONTEXT - 4)]
    with raises(ValueError, "prompt 1", f"max_new_tokens={max_new}", f"context of {CONTEXT}",
                "lower max_new_tokens"):
        engine().generate([PROMPT, prompt], Arm("ngram", 2), max_new_tokens=max_new)


def test_prompt_plus_budget_exactly_the_context_works():
    prompt = random_prompts(1, min_len=CONTEXT - 6, max_len=CONTEXT - 6, seed=4)[0]
    result = engine().generate([prompt], Arm("noisy", 3), max_new_tokens=6)
    assert result.tokens[0] == hf_greedy(short_target(), prompt, 6)


@pytest.mark.parametrize("bad", [128, 1000, -1])
def test_token_id_out_of_vocab(bad):
    with raises(ValueError, "prompt 1", "[0, 128)", "tokenizer"):
        engine().generate([PROMPT, [5, bad, 6]], Arm("ngram", 2), max_new_tokens=4)


@pytest.mark.parametrize("max_new", [0, -3])
def test_max_new_tokens_below_one(max_new):
    with raises(ValueError, "max_new_tokens must be >= 1", str(max_new)):
        engine().generate([PROMPT], Arm("ngram", 2), max_new_tokens=max_new)


# ------------------------------------------------------------------ arms and drafters

@pytest.mark.parametrize("gamma", [0, -1])
def test_arm_gamma_below_one(gamma):
    with raises(ValueError, "ngram", "gamma must be an integer >= 1", str(gamma)):
        Arm("ngram", gamma)


def test_autoregressive_arm_with_gamma():
    with raises(ValueError, "Arm.autoregressive()"):
        Arm(None, 3)


def test_unknown_drafter_in_arms():
    with raises(ValueError, "unknown drafter 'eagle'", "ngram", "noisy"):
        engine().generate([PROMPT, PROMPT], [Arm("ngram", 2), Arm("eagle", 2)], max_new_tokens=4)


def test_unknown_drafter_chosen_by_a_policy():
    class Rogue(ArmPolicy):
        def select(self, rows):
            return [Arm("eagle", 2) for _ in rows]

    with raises(DrafterError, "unknown drafter 'eagle'", "ngram", "noisy"):
        engine().generate([PROMPT], Rogue(), max_new_tokens=4)


def test_policy_returning_wrong_number_of_arms():
    class Short(ArmPolicy):
        def select(self, rows):
            return [Arm("ngram", 2)]

    with raises(RuntimeError, "1 arms for 2 rows"):
        engine().generate([PROMPT, PROMPT], Short(), max_new_tokens=4)


def test_model_drafter_with_another_vocabulary():
    other = tiny_model("llama", seed=3, vocab_size=96)
    with raises(DrafterError, "'small'", "vocabulary size 96", "128", "share the target's tokenizer"):
        SpecEngine(short_target(), {"small": ModelDrafter(other)}, eos_token_id=1)


def test_feedback_mode():
    with raises(ValueError, "feedback must be 'bandit' or 'full'", "'foo'"):
        engine().generate([PROMPT], Arm("ngram", 2), max_new_tokens=4, feedback="foo")


@pytest.mark.parametrize("n_arms", [2, 4])
def test_wrong_number_of_per_row_arms(n_arms):
    with raises(ValueError, f"got {n_arms} arms for 3 prompts", "one Arm or one per prompt"):
        engine().generate([PROMPT] * 3, [Arm("ngram", 2)] * n_arms, max_new_tokens=4)


# ------------------------------------------------------------------ one-token prompts

@pytest.mark.parametrize("arm", [Arm("ngram", 4), Arm("noisy", 3), Arm.autoregressive()], ids=str)
def test_prompt_of_length_one(arch, arm):
    prompt = [17]
    result = engine(arch).generate([prompt], arm, max_new_tokens=12)
    assert result.tokens[0] == hf_greedy(short_target(arch), prompt, 12)


@pytest.mark.parametrize("feedback", ["bandit", "full"])
def test_batch_of_length_one_prompts(arch, feedback):
    prompts = [[t] for t in (17, 42, 99, 3, 17)]
    arms = [Arm("ngram", 4), Arm("noisy", 3), Arm("noisy", 1), Arm.autoregressive(), Arm("noisy", 5)]
    e = engine(arch)
    for a in (Arm("noisy", 4), arms):
        result = e.generate(prompts, a, max_new_tokens=12, feedback=feedback)
        for i, p in enumerate(prompts):
            assert result.tokens[i] == hf_greedy(short_target(arch), p, 12), f"row {i} with {a}"


class EchoDrafter(Drafter):
    """A user drafter that drafts (repeats the last token) but cannot score committed positions."""
    name = "echo"

    def propose(self, ctx, rows, gammas):
        last = ctx.seqs[rows, ctx.seq_lens[rows] - 1]
        G = int(gammas.max())
        return Proposal(last[:, None].repeat(1, G), gammas.clone())


def test_a_drafter_without_scores_works_with_bandit_feedback_and_is_refused_with_full():
    target = short_target()
    eng = SpecEngine(target, {"echo": EchoDrafter(), "ngram": NgramDrafter()}, eos_token_id=1)
    prompts = random_prompts(3, min_len=2, max_len=8, seed=5)
    out = eng.generate(prompts, Arm("echo", 3), max_new_tokens=10)
    assert out.tokens == [hf_greedy(target, p, 10) for p in prompts]
    with pytest.raises(DrafterError, match="echo cannot: use feedback='bandit'"):
        eng.generate(prompts, Arm("ngram", 3), max_new_tokens=10, feedback="full")
