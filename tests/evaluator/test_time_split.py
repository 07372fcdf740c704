"""evaluators.timing.time_split: where a run's wall time went, from its stored lines."""
import pytest

from evaluators.timing import time_split


def rec(row, round_, drafter, draft_s, verify_s):
    return {"row": row, "round": round_, "drafter": drafter, "draft_s": draft_s, "verify_s": verify_s}


def test_rounds_and_draft_calls_are_counted_once_per_batch():
    # two rows stepping together for two rounds; round 0: both rows in one call of 0.2 s,
    # round 1: two calls (0.1 s and 0.3 s); a second batch decodes autoregressively
    lines = [
        {"run": "r", "bsz": 2, "batch": 0, "batch_wall_s": 10.0, "batch_prefill_s": 2.0,
         "records": [rec(0, 0, "a", 0.2, 3.0), rec(0, 1, "a", 0.1, 2.0)]},
        {"run": "r", "bsz": 2, "batch": 0, "batch_wall_s": 10.0, "batch_prefill_s": 2.0,
         "records": [rec(1, 0, "b", 0.2, 3.0), rec(1, 1, "b", 0.3, 2.0)]},
        {"run": "r", "bsz": 2, "batch": 1, "batch_wall_s": 10.0, "batch_prefill_s": 1.0,
         "records": [rec(0, 0, None, 0.0, 4.0)]},
    ]
    split = time_split([lines])["r"]
    assert split["prefill"] == pytest.approx(3.0 / 20)
    assert split["verify"] == pytest.approx(9.0 / 20)
    assert split["draft"] == pytest.approx(0.6 / 20)
    assert split["scoring_and_learner"] == pytest.approx(1 - (3.0 + 9.0 + 0.6) / 20)
    assert time_split([lines, lines])["r"] == pytest.approx(split)        # repeats add up, apart
