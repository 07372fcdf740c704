"""The Python API refuses bad input with a one-line TypeError/ValueError that names the fix: prompts
that are not lists of token-id lists, non-integer counts and seeds, arms that are not Arms, gammas
above MAX_GAMMA, and a pool holding one drafter object under two names. Tiny random models only."""
import numpy as np
import pytest
import torch

from drafters import DrafterError, ModelDrafter, NgramDrafter
from specsel import Arm, Sampling, SpecEngine
from specsel.core.arms import MAX_GAMMA
from specsel.core.policy import FixedArms
from specsel.learners.dynamic_gamma import DynamicGamma

from conftest import drafter_models, one_line, target_model

PROMPT = [2, 3, 4, 2, 3]


def engine() -> SpecEngine:
    return SpecEngine(target_model("llama"), {"ngram": NgramDrafter()}, eos_token_id=1)


# ----------------------------------------------------------------------------- prompts


@pytest.mark.parametrize("prompts, needles", [
    ("hello world", ["prompts must be a list of token-id lists; got a str", "encode it with the tokenizer first"]),
    (b"hello", ["got a bytes"]),
    (PROMPT, ["got a flat list of ints", "wrap a single prompt in a list: [ids]"]),
    (torch.tensor(PROMPT), ["1-d Tensor", "wrap a single prompt in a list"]),
    (np.array(PROMPT), ["1-d ndarray", "wrap a single prompt in a list"]),
    (None, ["prompts must be a list of token-id lists; got None"]),
    (7, ["got a int"]),
    (["hello"], ["prompt 0 is a str", "encode it with the tokenizer first"]),
    ([PROMPT, "hi"], ["prompt 1 is a str"]),
    ([[2.0, 3.5]], ["prompt 0 holds a float", "token ids are integers"]),      # never silently truncated
    ([torch.tensor([2.0, 3.0])], ["prompt 0 holds a float"]),
    ([[2, None]], ["prompt 0 holds None at position 1"]),
    ([[True, False]], ["prompt 0 holds a bool"]),
    ([torch.ones(2, 3, dtype=torch.long)], ["2-d Tensor"]),
    ([{2, 3}], ["prompt 0 is a set"]),
])
def test_bad_prompts_are_refused(prompts, needles):
    with pytest.raises(TypeError) as info:
        engine().generate(prompts, Arm("ngram", 2), max_new_tokens=4)
    one_line(info, *needles)


def test_integer_prompts_of_any_kind_are_the_same():
    e = engine()
    ref = e.generate([PROMPT], Arm("ngram", 2), max_new_tokens=6).tokens
    for prompts in ([tuple(PROMPT)], torch.tensor([PROMPT]), [torch.tensor(PROMPT)], np.array([PROMPT]),
                    [[np.int64(t) for t in PROMPT]]):
        assert e.generate(prompts, Arm("ngram", 2), max_new_tokens=6).tokens == ref


# ----------------------------------------------------------------------------- counts, seed, sampling


@pytest.mark.parametrize("value", [2.5, None, True, "8", 0, -1])
def test_max_new_tokens_must_be_a_positive_integer(value):
    with pytest.raises(ValueError) as info:
        engine().generate([PROMPT], Arm("ngram", 2), max_new_tokens=value)
    one_line(info, "max_new_tokens must be", ">= 1", repr(value))


@pytest.mark.parametrize("value", [-1, 1.5, None, 2**64])
def test_seed_must_be_a_non_negative_integer(value):
    with pytest.raises(ValueError) as info:
        engine().generate([PROMPT], Arm("ngram", 2), max_new_tokens=4, seed=value)
    one_line(info, "seed must be an integer >= 0")


def test_numpy_integers_are_integers():
    out = engine().generate([PROMPT], Arm("ngram", 2), max_new_tokens=np.int64(3), seed=np.int32(2))
    assert len(out.tokens[0]) == 3


@pytest.mark.parametrize("value", [True, 0, 1.0])
def test_score_every_must_be_a_positive_integer(value):
    with pytest.raises(ValueError) as info:
        engine().generate([PROMPT], Arm("ngram", 2), max_new_tokens=4, score_every=value)
    one_line(info, "score_every")


@pytest.mark.parametrize("value", [0.7, "greedy", {"temperature": 0.7}])
def test_sampling_must_be_a_sampling(value):
    with pytest.raises(TypeError) as info:
        engine().generate([PROMPT], Arm("ngram", 2), max_new_tokens=4, sampling=value)
    one_line(info, "sampling must be None (greedy) or a Sampling", "Sampling(temperature=0.7")


def test_a_sampling_still_runs():
    out = engine().generate([PROMPT], Arm("ngram", 2), max_new_tokens=4, sampling=Sampling(0.7, 0.9))
    assert len(out.tokens[0]) == 4


def test_eos_must_be_token_ids():
    with pytest.raises(TypeError) as info:
        SpecEngine(target_model("llama"), {}, eos_token_id="</s>")
    one_line(info, "eos_token_id must be a token id", "tokenizer.eos_token_id")


# ----------------------------------------------------------------------------- arms


@pytest.mark.parametrize("arms, needles", [
    ("ngram", ["Arm(\"ngram\", 4)", "got a str", "Arm('ngram', 4)"]),
    (("ngram", 4), ["got a tuple", "use Arm('ngram', 4)"]),
    (["ngram@4"], ["arms[0] is a str", "Arm.parse('ngram@4')"]),
    ([Arm("ngram", 2), "x"], ["arms[1] is a str"]),
    (None, ["got None"]),
    (4, ["got a int"]),
    ({"ngram": 4}, ["got a dict"]),
])
def test_arms_must_be_arms(arms, needles):
    with pytest.raises(TypeError) as info:
        engine().generate([PROMPT], arms, max_new_tokens=4)
    msg = one_line(info, *needles)
    assert "arms must be an Arm" in msg and "a policy" in msg and "one per prompt" in msg
    assert "arms for" not in msg              # not "got 5 arms for 1 prompts"


def test_arm_count_still_checked():
    with pytest.raises(ValueError) as info:
        engine().generate([PROMPT], [Arm("ngram", 2)] * 2, max_new_tokens=4)
    one_line(info, "got 2 arms for 1 prompts")


def test_a_policy_class_is_not_a_policy():
    with pytest.raises(TypeError) as info:
        engine().generate([PROMPT], FixedArms, max_new_tokens=4)
    one_line(info, "pass an instance")


@pytest.mark.parametrize("drafter, gamma, needle", [
    ("ngram", MAX_GAMMA + 1, f"above the cap of {MAX_GAMMA}"),
    ("ngram", 200, "a longer draft cannot pay"),
    ("ngram", True, "gamma must be an integer >= 1"),
    ("ngram", 2.0, "gamma must be an integer >= 1"),
    (3, 2, "an arm's drafter is a pool name"),
    ("", 2, "an arm's drafter is a pool name"),
])
def test_arm_values(drafter, gamma, needle):
    with pytest.raises(ValueError) as info:
        Arm(drafter, gamma)
    one_line(info, needle)


def test_gamma_cap_reaches_every_path():
    assert Arm("ngram", MAX_GAMMA).gamma == MAX_GAMMA
    with pytest.raises(ValueError, match="above the cap"):
        Arm.parse(f"ngram@{MAX_GAMMA + 1}")
    with pytest.raises(ValueError, match="cannot pay"):
        engine().generate([PROMPT], Arm("ngram", 10 * MAX_GAMMA), max_new_tokens=4)
    with pytest.raises(ValueError, match=r"\[1, 64\]"):
        DynamicGamma("ngram", max_gamma=MAX_GAMMA + 1)
    policy = DynamicGamma("ngram", start=MAX_GAMMA - 1)            # grows by 2 a round, never past the cap
    policy.start(1)
    policy.gamma[0] = policy._cap(MAX_GAMMA + 1)
    assert policy.gamma[0] == MAX_GAMMA and policy.select([0]) == [Arm("ngram", MAX_GAMMA)]


# ----------------------------------------------------------------------------- the pool


def test_one_drafter_under_two_names_is_refused():
    d = NgramDrafter()
    with pytest.raises(DrafterError) as info:
        SpecEngine(target_model("llama"), {"a": d, "b": d})
    one_line(info, "'a' and 'b'", "same drafter object", "build one drafter per name")
    assert isinstance(info.value, ValueError)
    model_drafter = ModelDrafter(drafter_models("llama")["noisy"])
    with pytest.raises(DrafterError, match="'noisy' and 'copy'"):
        SpecEngine(target_model("llama"), {"ngram": NgramDrafter(), "noisy": model_drafter, "copy": model_drafter})


def test_one_drafter_per_name_is_fine():
    e = SpecEngine(target_model("llama"), {"a": NgramDrafter(), "b": NgramDrafter()}, eos_token_id=1)
    out = e.generate([PROMPT, PROMPT], [Arm("a", 3), Arm("b", 2)], max_new_tokens=6, feedback="full")
    assert out.tokens[0] == out.tokens[1]


@pytest.mark.parametrize("pool, error, needle", [
    ([NgramDrafter(), NgramDrafter()], DrafterError, "two drafters of the pool are named 'ngram'"),
    (NgramDrafter(), TypeError, "the pool is one NgramDrafter"),
    ({"ngram": "ngram"}, TypeError, "pool entry 'ngram' is a str, not a Drafter"),
    ({3: NgramDrafter()}, DrafterError, "drafter names must be non-empty strings"),
    ({None: NgramDrafter()}, DrafterError, "drafter names must be non-empty strings (got None)"),
    ([NgramDrafter(), "ngram"], TypeError, "pool[1] is a str, not a Drafter"),
    ("ngram", TypeError, "the pool must be a dict"),
])
def test_bad_pools(pool, error, needle):
    with pytest.raises(error) as info:
        SpecEngine(target_model("llama"), pool)
    one_line(info, needle)
