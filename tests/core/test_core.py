"""The bottom layer: one written form of an arm, the seed formulas, the drafter protocols."""
import ast

import pytest
import torch

from specsel.core.arms import Arm, arm_name, arm_pairs
from specsel.core.drafting import NOT_SCORED, Capabilities, DraftContext, Drafter, Scorer, ScoringWindow
from specsel.core.seeds import batch_seed, query_seed

from conftest import REPO

CORE = REPO / "specsel" / "core"


@pytest.mark.parametrize("arm", [Arm("ngram", 4), Arm("lora_code", 1), Arm("a@b", 2), Arm.autoregressive()])
def test_an_arm_reads_back_from_its_written_form(arm):
    assert Arm.parse(str(arm)) == arm
    assert arm_name(arm.drafter, arm.gamma) == str(arm)


@pytest.mark.parametrize("text", ["ngram", "ngram@0", "@4", "ngram@x", "ngram@-1"])
def test_a_bad_arm_name_says_what_is_expected(text):
    with pytest.raises(ValueError, match="DRAFTER@GAMMA"):
        Arm.parse(text)


def test_arm_pairs_index_drafters_in_pool_order():
    arms = [Arm("b", 2), Arm("a", 4), Arm.autoregressive()]
    assert arm_pairs(arms, ["a", "b"]) == [(1, 2), (0, 4), (0, 0)]


def test_seed_formulas_are_the_ones_stored_results_were_made_with():
    # a resumed study and an offline replay must draw what the original run drew
    assert query_seed(0, 7) == 7 and query_seed(3, 2) == 3 * 1_000_003 + 2
    assert batch_seed(1, 4, 5) == 1_000_003 + 4 * 10_007 + 5


def test_the_bottom_layer_imports_nothing_else_of_the_project():
    for path in CORE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                top = node.module.split(".")[0]
                assert top not in ("drafters", "evaluators"), (path.name, node.module)
                if top == "specsel":
                    assert node.module.startswith("specsel.core"), (path.name, node.module)


def test_scoring_window_follows_the_rows_that_stay():
    ctx = DraftContext(torch.zeros(3, 5, dtype=torch.long), torch.tensor([1, 2, 3]), torch.tensor([1, 2, 3]),
                       scoring=ScoringWindow(frozenset({"a"}), torch.tensor([4, 5, 6])))
    assert ctx.keeps_scores("a") and not ctx.keeps_scores("b")
    ctx.select_rows(torch.tensor([0, 2]))
    assert ctx.score_from.tolist() == [4, 6]
    ctx.scoring = NOT_SCORED
    assert not ctx.keeps_scores("a")
    ctx.scoring = None                       # no window: everyone may be scored, anywhere
    assert ctx.keeps_scores("a") and ctx.score_from is None


def test_a_drafter_declares_its_needs_once():
    assert Drafter.capabilities == Capabilities()
    assert not issubclass(Drafter, Scorer)     # scoring is an optional protocol
    with pytest.raises(NotImplementedError, match="deferred"):
        Scorer().score_since(None, None, None)


def test_the_cost_model_hears_a_round_the_same_from_records_and_from_stored_dicts():
    import dataclasses

    import numpy as np

    from specsel.core.costs import CostModel, RelativeCostModel
    from specsel.core.records import RoundRecord

    rnd = [RoundRecord(0, 0, "b", 4, 3, 2, 3, 0.03, 0.2, 3), RoundRecord(1, 0, None, 0, 0, 0, 1, 0.0, 0.2, 3),
           RoundRecord(2, 0, "a", 2, 2, 0, 1, 0.01, 0.2, 3)]
    live, stored = CostModel(2, 4), CostModel(2, 4)
    live.observe_round(rnd, ["a", "b"])
    stored.observe_round([dataclasses.asdict(r) for r in rnd], ["a", "b"])
    for m in (live, stored):
        assert m.verify_n.tolist() == [0, 0, 0, 1, 0]                   # the widest draft: 3
        np.testing.assert_allclose(m.t_draft(), [0.005, 0.01])          # seconds per draft token
    rel = RelativeCostModel(2, 4)
    rel.observe_verify(0, 0.1)
    rel.observe_verify(2, 0.3)
    np.testing.assert_allclose(rel.seconds(np.array([0, 0]), np.array([0, 2])), [1.0, 3.0])
