"""The API fits what users hold: a tokenizer's BatchEncoding as prompts, the feedback mode taken
from the policy, LearnerPolicy without a repeated drafter list, a warning for score_every under
bandit feedback, query ids on the records, and training checkpoints that load with
weights_only=True. Tiny random models only."""
import argparse
import warnings

import pytest
import torch
from transformers import BatchEncoding

from drafters import ModelDrafter, NgramDrafter
from evaluators.records import append_records, by_query, read_records, to_dict
from specsel import Arm, SpecEngine, arm_grid
from specsel.learners.policy import LearnerPolicy

from conftest import drafter_models, hf_greedy, one_line, target_model

PROMPTS = [[2, 3, 4, 2, 3], [5, 6, 7]]
PAD = 0


def engine() -> SpecEngine:
    return SpecEngine(target_model("llama"), {"ngram": NgramDrafter()}, eos_token_id=1)


def pool_engine() -> SpecEngine:
    noisy = drafter_models("llama")["noisy"]
    return SpecEngine(target_model("llama"), {"noisy": ModelDrafter(noisy), "ngram": NgramDrafter()}, eos_token_id=1)


def left_padded(prompts):
    width = max(len(p) for p in prompts)
    ids = [[PAD] * (width - len(p)) + p for p in prompts]
    mask = [[0] * (width - len(p)) + [1] * len(p) for p in prompts]
    return ids, mask


# ----------------------------------------------------------------------------- BatchEncoding prompts


@pytest.mark.parametrize("tensors", [None, "pt"])
def test_a_padded_batch_encoding_decodes_as_its_prompts(tensors):
    ids, mask = left_padded(PROMPTS)
    enc = BatchEncoding({"input_ids": ids, "attention_mask": mask}, tensor_type=tensors)
    e = engine()
    want = e.generate(PROMPTS, Arm("ngram", 3), max_new_tokens=8)
    got = e.generate(enc, Arm("ngram", 3), max_new_tokens=8)
    assert got.tokens == want.tokens
    assert got.tokens == [hf_greedy(e.target, p, 8) for p in PROMPTS]


def test_right_padding_and_a_plain_dict_are_unpadded_too():
    width = max(len(p) for p in PROMPTS)
    ids = torch.tensor([p + [PAD] * (width - len(p)) for p in PROMPTS])
    mask = torch.tensor([[1] * len(p) + [0] * (width - len(p)) for p in PROMPTS])
    e = engine()
    want = e.generate(PROMPTS, Arm("ngram", 3), max_new_tokens=6).tokens
    assert e.generate({"input_ids": ids, "attention_mask": mask}, Arm("ngram", 3), max_new_tokens=6).tokens == want
    # without a mask every token is prompt
    assert e.generate({"input_ids": [PROMPTS[1]]}, Arm("ngram", 3), max_new_tokens=6).tokens == [want[1]]


def test_one_conversation_encoding_is_one_prompt():
    """apply_chat_template(one conversation, add_generation_prompt=True) gives flat input_ids."""
    prompt = PROMPTS[0]
    enc = BatchEncoding({"input_ids": prompt, "attention_mask": [1] * len(prompt)})
    e = engine()
    assert e.generate(enc, Arm("ngram", 3), max_new_tokens=6).tokens == \
        e.generate([prompt], Arm("ngram", 3), max_new_tokens=6).tokens


@pytest.mark.parametrize("enc, error, needles", [
    ({"ids": [[2, 3]]}, TypeError, ["without 'input_ids'"]),
    (BatchEncoding({"attention_mask": [[1, 1]]}), TypeError, ["without 'input_ids'"]),
    ({"input_ids": [[2, 3, 4]], "attention_mask": [[1, 1]]}, ValueError, ["attention_mask does not have the shape"]),
    ({"input_ids": "hello"}, TypeError, ["input_ids must be a batch of token-id lists"]),
    ({"input_ids": torch.zeros(1, 2, 3, dtype=torch.long)}, TypeError, ["3-d Tensor"]),
    ({"input_ids": [["a", "b"]]}, TypeError, ["prompt 0 holds a str"]),
])
def test_a_bad_encoding_is_refused_in_one_line(enc, error, needles):
    with pytest.raises(error) as info:
        engine().generate(enc, Arm("ngram", 2), max_new_tokens=4)
    one_line(info, *needles)


# ----------------------------------------------------------------------------- feedback from the policy


def test_feedback_defaults_to_the_policys_mode():
    e = pool_engine()
    hedge = LearnerPolicy("hedgespec", arm_grid(["noisy", "ngram"], [2]))
    out = e.generate(PROMPTS, hedge, max_new_tokens=8)           # full information, as HedgeSpec needs
    assert all(r.position_acceptance is not None for r in out.records)
    bandit = LearnerPolicy("ucbspec", arm_grid(["noisy", "ngram"], [2]))
    out = e.generate(PROMPTS, bandit, max_new_tokens=8)
    assert all(r.position_acceptance is None for r in out.records)
    out = e.generate(PROMPTS, Arm("ngram", 2), max_new_tokens=8)   # an Arm: bandit
    assert all(r.position_acceptance is None for r in out.records)


def test_bandit_feedback_to_hedgespec_names_the_learner():
    policy = LearnerPolicy("hedgespec", arm_grid(["noisy", "ngram"], [2]))
    with pytest.raises(ValueError) as info:
        pool_engine().generate(PROMPTS, policy, max_new_tokens=4, feedback="bandit")
    msg = one_line(info, "hedgespec needs feedback='full'", "leave feedback unset")
    assert "LearnerPolicy" not in msg


def test_an_unknown_feedback_mode_is_refused():
    with pytest.raises(ValueError) as info:
        engine().generate(PROMPTS, Arm("ngram", 2), max_new_tokens=4, feedback="partial")
    one_line(info, "feedback must be 'bandit' or 'full', or None for the policy's mode")


# ----------------------------------------------------------------------------- LearnerPolicy drafters


def test_learner_policy_takes_its_drafters_from_the_arms():
    arms = [Arm("ngram", 2), Arm.autoregressive(), Arm("noisy", 2), Arm("ngram", 4)]
    assert LearnerPolicy("ucbspec", arms).drafters == ["ngram", "noisy"]
    assert LearnerPolicy("ucbspec", arms, ["noisy", "ngram", "other"]).drafters == ["noisy", "ngram", "other"]
    assert LearnerPolicy("ucbspec", arms, drafters=("noisy", "ngram")).drafters == ["noisy", "ngram"]
    out = pool_engine().generate(PROMPTS, LearnerPolicy("hedgespec", arms), max_new_tokens=8)
    assert len(out.tokens) == 2


def test_a_drafter_missing_from_drafters_is_named_without_the_pool():
    with pytest.raises(ValueError) as info:
        LearnerPolicy("ucbspec", [Arm("eagle", 2)], ["ngram"])
    msg = one_line(info, "unknown drafter 'eagle'", "drafters given to LearnerPolicy (ngram)", "leave drafters out")
    assert "pool" not in msg
    with pytest.raises(TypeError) as info:
        LearnerPolicy("ucbspec", [Arm("ngram", 2)], "ngram")
    one_line(info, "drafters must be a list of drafter names")
    with pytest.raises(TypeError) as info:
        LearnerPolicy("ucbspec", ["ngram@2"])
    one_line(info, "arms[0] is a str, not an Arm")


# ----------------------------------------------------------------------------- score_every


def test_score_every_under_bandit_feedback_warns_at_the_call():
    with pytest.warns(UserWarning, match="score_every=4 has no effect under bandit feedback") as caught:
        engine().generate(PROMPTS, Arm("ngram", 2), max_new_tokens=4, score_every=4)
    assert len(caught) == 1 and caught[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        engine().generate(PROMPTS, Arm("ngram", 2), max_new_tokens=4)
        engine().generate(PROMPTS, Arm("ngram", 2), max_new_tokens=4, feedback="full", score_every=4)


# ----------------------------------------------------------------------------- query ids


def test_records_carry_the_query_ids(tmp_path):
    e = engine()
    out = e.generate(PROMPTS, Arm("ngram", 2), max_new_tokens=6, query_ids=["math/7", "code/3"])
    assert {r.query for r in out.records} == {"math/7", "code/3"}
    assert all(r.query == ["math/7", "code/3"][r.row] for r in out.records)
    default = e.generate(PROMPTS, Arm("ngram", 2), max_new_tokens=6)
    assert all(r.query == r.row for r in default.records)
    numbered = e.generate(PROMPTS, Arm("ngram", 2), max_new_tokens=6, query_ids=torch.tensor([10, 11]))
    assert {r.query for r in numbered.records} == {10, 11}
    assert to_dict(out.records[0])["query"] == out.records[0].query
    append_records(tmp_path / "r.jsonl", out.records)
    groups = by_query(read_records(tmp_path / "r.jsonl"))
    assert set(groups) == {"math/7", "code/3"}
    assert sum(r["committed"] for r in groups["code/3"]) == len(out.tokens[1])
    append_records(tmp_path / "s.jsonl", out.records, query="override")
    assert {r["query"] for r in read_records(tmp_path / "s.jsonl")} == {"override"}


@pytest.mark.parametrize("query_ids, error, needle", [
    (["a"], ValueError, "got 1 query_ids for 2 prompts"),
    (["a", "a"], ValueError, "query id 'a' is given twice"),
    ([1, None], TypeError, "query_ids[1] is None"),
    ([1.5, 2], TypeError, "query_ids[0] is a float"),
    ("ab", TypeError, "query_ids must be a list of ids"),
])
def test_bad_query_ids_are_refused(query_ids, error, needle):
    with pytest.raises(error) as info:
        engine().generate(PROMPTS, Arm("ngram", 2), max_new_tokens=4, query_ids=query_ids)
    one_line(info, needle)


# ----------------------------------------------------------------------------- loading safety


def test_training_checkpoint_loads_with_weights_only(tmp_path):
    from drafters.training.trainer import TrainOptions, train
    module = torch.nn.Linear(3, 2)
    x = torch.randn(8, 3)

    def loss_fn(rows, g):
        loss = module(x[rows]).pow(2).mean()
        return loss, {"top1": torch.tensor(0.5), "width": 3}

    fingerprint = {"domains": ("math", "code"), "tokens": torch.tensor(8)}
    train(module, loss_fn, 8,
          TrainOptions(steps=3, batch_size=2, lr=1e-2, save_every=2, progress=False, warmup=1, fingerprint=fingerprint),
          checkpoint_dir=tmp_path)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["step"] == 3 and state["history"][0]["top1"] == 0.5
    assert state["identity"]["domains"] == ["math", "code"]
    summary = train(module, loss_fn, 8,                                     # resumes: nothing left to run
                    TrainOptions(steps=3, batch_size=2, lr=1e-2, progress=False, warmup=1, fingerprint=fingerprint),
                    checkpoint_dir=tmp_path)
    assert summary["steps"] == 3 and len(summary["history"]) == 3


def test_a_checkpoint_holding_objects_is_refused(tmp_path):
    from drafters.training.trainer import TrainOptions, train
    torch.save({"names": [], "identity": argparse.Namespace(n_rows=4)}, tmp_path / "checkpoint.pt")
    module = torch.nn.Linear(3, 2)
    with pytest.raises(ValueError) as info:
        train(module, lambda r, g: (module.weight.sum(), {}), 4,
              TrainOptions(steps=1, batch_size=2, lr=1e-2, progress=False), checkpoint_dir=tmp_path)
    one_line(info, "holds objects other than tensors and plain types", "delete it to start over")
