"""recipes/tune_hedge.py: the replay table that picks HedgeSpec's discount."""
import pytest

from conftest import load_recipe


@pytest.fixture(scope="module")
def tune():
    return load_recipe("tune_hedge")


def line(domain, qid, a, b):
    """One query: drafter 'a' right at positions a, 'b' at b (greedy 0/1), one round per token."""
    return {"qid": qid, "domain": domain,
            "records": [{"round": s, "position_acceptance": {"a": [float(a[s])], "b": [float(b[s])]}}
                        for s in range(len(a))]}


def test_table_fixed_oracle_and_hedge(tune):
    copy = line("medqa", "q0", [1] * 8, [0] * 8)                # 'a' copies: accepted everywhere
    head = line("math", "q1", [0] * 8, [1] * 8)                 # 'b' wins here
    result = tune.table([copy, head], ["a", "b"], gamma=3, discounts=[1.0, 0.5])
    mat = result["mat"]
    # fixed 'a' at gamma 3: 2 rounds on q0 (4 + 4 tokens), 8 rounds on q1
    assert mat["a"]["medqa"] == pytest.approx(8 / 2) and mat["a"]["math"] == pytest.approx(1.0)
    assert mat["a"]["mixed"] == pytest.approx(16 / 10)
    assert mat["oracle"]["mixed"] == pytest.approx(16 / 4)
    assert result["queries"] == 2 and result["tokens"] == {"medqa": 8, "math": 8}
    for policy in ("hedgespec discount=1", "hedgespec discount=0.5", "plain NormalHedge (length loss)"):
        assert mat["a"]["mixed"] <= mat[policy]["mixed"] <= mat["oracle"]["mixed"]
    # with acceptance feedback the learner leaves the wrong start arm after one position
    assert mat["hedgespec discount=0.5"]["math"] > mat["a"]["math"]


def test_bad_discount_is_one_line(tune):
    with pytest.raises(ValueError, match="discount"):
        tune.main(["--discounts", "1.5"])


def test_table_replays_the_studys_feedback_delay(tune):
    """--score-every k: HedgeSpec hears of its rounds k at a time, as in a study run with it, so
    it stays longer on a wrong first arm; fixed drafters and the oracle do not change."""
    head = line("math", "q1", [0] * 24, [1] * 24)               # 'a' (the first arm) never right
    now = tune.table([head], ["a", "b"], gamma=3, discounts=[0.5])["mat"]
    late = tune.table([head], ["a", "b"], gamma=3, discounts=[0.5], score_every=3)["mat"]
    assert late["hedgespec discount=0.5"]["math"] < now["hedgespec discount=0.5"]["math"]
    for policy in ("a", "b", "oracle"):
        assert late[policy] == now[policy]
