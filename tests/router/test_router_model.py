"""The learned router on synthetic data: labels, probabilities, priors, the file format and its
refusals, and cross-validation. No models, no data files."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from specsel.router import (
    SHAPE_FEATURES,
    RouterError,
    RouterModel,
    cross_validate,
    load_routers,
    query_text,
    save_routers,
    shape_features,
)
from specsel.router.model import cost_labels

ARMS = ["lora_math@4", "eagle@4", "ngram@4"]
MATH = ["Solve $x^{}^2 = {}$ for x.", "Compute $\\frac{{{}}}{{{}}}$ exactly.", "Find $y$ if $y^3 = {}{}$."]
CODE = ["def f{}(x):\n    return x + {}", "import os\ndef g{}(): return {};", "Write def h{}(a): return a * {}"]
PROSE = ["Tell me about the history of city number {} in {} words", "Write a short poem about spring, {} and {}",
         "Why do people enjoy travelling to place {} in year {}"]


def corpus(per_kind: int = 12, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Texts of three kinds; kind k's arm (ARMS[k]) costs 1, the others 2 to 3."""
    rng = np.random.default_rng(seed)
    texts, kinds = [], []
    for k, templates in enumerate((MATH, CODE, PROSE)):
        for i in range(per_kind):
            texts.append(templates[i % 3].format(i, rng.integers(100)))
            kinds.append(k)
    kinds = np.asarray(kinds)
    costs = rng.uniform(2.0, 3.0, size=(len(texts), 3))
    costs[np.arange(len(texts)), kinds] = 1.0
    return texts, costs, kinds


@pytest.fixture(scope="module")
def fitted() -> tuple[RouterModel, list[str], np.ndarray, np.ndarray]:
    texts, costs, kinds = corpus()
    return RouterModel.fit(texts, costs, ARMS, "drafter", info={"source": "synthetic"}), texts, costs, kinds


def tensors_and_doc(folder):
    return load_file(str(folder / "router.safetensors")), json.loads((folder / "router.json").read_text())


def rewrite(folder, tensors, doc):
    """Write tampered tensors and a JSON whose sha256 matches them, so only the later checks can catch it."""
    save_file(tensors, str(folder / "router.safetensors"))
    doc["sha256"] = hashlib.sha256((folder / "router.safetensors").read_bytes()).hexdigest()
    (folder / "router.json").write_text(json.dumps(doc))


def test_query_text_and_shape_features():
    chat = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"}, {"role": "user", "content": [{"type": "text", "text": "x?"}]}]
    assert query_text(chat) == "hi\n\nx?" and query_text("plain") == "plain"
    with pytest.raises(ValueError):
        query_text(42)
    x = shape_features(["SELECT a FROM t;\nA. yes\nB) no", "", "def f(): return 1"])
    assert x.shape == (3, len(SHAPE_FEATURES)) and 12 <= len(SHAPE_FEATURES) <= 16
    col = dict(zip(SHAPE_FEATURES, x[0]))
    assert col["sql"] == pytest.approx(np.log1p(1)) and col["choices"] == pytest.approx(np.log1p(2))
    assert np.all(x[1] == 0) and x[2, SHAPE_FEATURES.index("code_def")] > 0


def test_fit_separates_kinds_and_records_facts(fitted):
    model, texts, _, kinds = fitted
    assert np.mean([ARMS.index(a) for a in model.predict(texts)] == kinds) >= 0.95
    assert model.info["source"] == "synthetic" and model.info["n_queries"] == len(texts)
    assert model.info["label_counts"] == {a: 12 for a in ARMS}
    chats = [[{"role": "user", "content": t}] for t in texts[:3]]   # chats read as their user text
    assert np.allclose(model.predict_proba(chats), model.predict_proba(texts[:3]))


def test_predict_proba_covers_all_arms_and_unseen_gets_zero():
    texts, costs, _ = corpus()
    arms = ARMS + ["autoregressive"]
    model = RouterModel.fit(texts, np.c_[costs, np.full(len(texts), 9.0)], arms, "drafter")
    p = model.predict_proba(texts)
    assert p.shape == (len(texts), 4) and np.allclose(p.sum(axis=1), 1.0)
    assert np.all(p[:, 3] == 0) and model.classes == ARMS


def test_fit_validates_shapes():
    with pytest.raises(ValueError, match="shape"):
        RouterModel.fit(["a", "b"], np.zeros((2, 2)), ARMS, "s")
    with pytest.raises(ValueError, match="distinct"):
        RouterModel.fit(["a"], np.zeros((1, 2)), ["x", "x"], "s")
    with pytest.raises(ValueError, match="finite"):
        RouterModel.fit(["a"], [[np.nan, 1.0]], ["x", "y"], "s")


def test_prior_maps_by_name_and_mixes_with_uniform(fitted):
    model, texts, _, _ = fitted
    p = model.predict_proba(texts[:4])
    pool = ["ngram@4", "other@2", "lora_math@4", "eagle@4"]
    q = model.prior(texts[:4], pool, floor=0.2)
    assert np.allclose(q.sum(axis=1), 1.0) and np.allclose(q[:, 1], 0.2 / 4)   # unknown arm: floor only
    assert np.allclose(q[:, [2, 3, 0]], 0.8 * p + 0.05)
    partial = model.prior(texts[:4], ["eagle@4", "x"], floor=0.0)    # renormalised over the known arm
    assert np.allclose(partial, [[1.0, 0.0]] * 4)
    with pytest.raises(RouterError, match="refit the router on this pool"):
        model.prior(texts[:1], ["x@1", "y@2"])


def test_ties_go_to_the_best_fixed_arm_then_lowest_index():
    costs = np.array([[1.0, 1.0, 1.0], [2.0, 1.0, 5.0], [1.0, 1.0, 3.0]])   # totals 4, 3, 9: arm 1 best
    assert cost_labels(costs).tolist() == [1, 1, 1]
    assert cost_labels(np.array([[1.0, 1.0], [2.0, 2.0]])).tolist() == [0, 0]   # equal totals: lowest index
    assert cost_labels(np.array([[2.0, 1.0, 1.0], [1.0, 3.0, 3.0]])).tolist() == [1, 0]


def test_constant_router_predicts_its_one_arm():
    model = RouterModel.fit(["a", "b", "c"], [[2.0, 1.0], [3.0, 1.0], [1.0, 1.0]], ["x", "y"], "gamma")
    assert model.constant and model.classes == ["y"]
    assert model.predict(["anything"]) == ["y"] and model.predict_proba(["q"]).tolist() == [[0.0, 1.0]]


def test_save_load_round_trip(tmp_path, fitted):
    model, texts, costs, _ = fitted
    binary = RouterModel.fit(texts, costs[:, :2], ARMS[:2], "pair")
    constant = RouterModel.fit(texts, np.zeros((len(texts), 2)), ["a", "b"], "gamma")
    save_routers(tmp_path, {"drafter": model, "pair": binary, "gamma": constant}, {"target": "tiny"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["router.json", "router.safetensors"]   # no pickle
    loaded, meta = load_routers(tmp_path)
    assert meta == {"target": "tiny"} and set(loaded) == {"drafter", "pair", "gamma"}
    for name, original in (("drafter", model), ("pair", binary), ("gamma", constant)):
        assert loaded[name] == original   # setting, arms, classes, C, n_features, info
        assert np.allclose(loaded[name].predict_proba(texts), original.predict_proba(texts), atol=1e-6)
    only_constant = tmp_path / "c"
    save_routers(only_constant, {"gamma": constant}, {})
    assert load_routers(only_constant)[0]["gamma"].predict(["q"]) == ["a"]


@pytest.fixture
def saved(tmp_path, fitted):
    save_routers(tmp_path, {"drafter": fitted[0]}, {})
    return tmp_path


def test_refuses_missing_invalid_and_unknown(tmp_path, saved):
    with pytest.raises(RouterError, match="no such router file"):
        load_routers(tmp_path / "nowhere")
    doc = json.loads((saved / "router.json").read_text())
    (saved / "router.json").write_text("{not json")
    with pytest.raises(RouterError, match="router.json: invalid JSON.*specsel router fit"):
        load_routers(saved)
    (saved / "router.json").write_text(json.dumps({**doc, "format": "other/9"}))
    with pytest.raises(RouterError, match="unknown format"):
        load_routers(saved)


def test_refuses_a_modified_tensor_file(saved):
    blob = bytearray((saved / "router.safetensors").read_bytes())
    blob[-5] ^= 0xFF
    (saved / "router.safetensors").write_bytes(bytes(blob))
    with pytest.raises(RouterError, match="router.safetensors: sha256 differs") as e:
        load_routers(saved)
    assert "\n" not in str(e.value)


def test_refuses_edited_classes_and_shape_features(saved):
    tensors, doc = tensors_and_doc(saved)
    doc["models"]["drafter"]["classes"] = ["lora_math@4", "eagle@4", "sneaky@9"]   # the JSON alone edited
    (saved / "router.json").write_text(json.dumps(doc))
    with pytest.raises(RouterError, match="not a subset"):
        load_routers(saved)
    doc["models"]["drafter"]["classes"] = ARMS
    doc["models"]["drafter"]["shape_features"] = ["log_chars"]
    rewrite(saved, tensors, doc)
    with pytest.raises(RouterError, match="shape features"):
        load_routers(saved)


def test_refuses_missing_or_misshapen_tensors(saved):
    tensors, doc = tensors_and_doc(saved)
    rewrite(saved, {k: v for k, v in tensors.items() if k != "drafter.intercept"}, doc)
    with pytest.raises(RouterError, match="'drafter.intercept' is missing"):
        load_routers(saved)
    rewrite(saved, {**tensors, "drafter.coef": tensors["drafter.coef"][:, :10]}, doc)
    with pytest.raises(RouterError, match="'drafter.coef' has shape"):
        load_routers(saved)


def test_cross_validate_beats_majority_on_separable_data():
    texts, costs, _ = corpus()
    cv = cross_validate(texts, costs, ARMS, folds=3)
    assert cv["n"] == 36 and cv["splitter"] == "stratified" and cv["label_counts"] == {a: 12 for a in ARMS}
    assert cv["accuracy"] > cv["majority_accuracy"] and cv["accuracy"] >= 0.9
    assert 0 <= cv["routing_regret"] <= cv["majority_regret"] and cv["best_fixed_regret"] >= 0
    assert cv["oracle_cost"] == pytest.approx(1.0) and cv["routing_cost"] >= cv["oracle_cost"]


def test_cross_validate_small_and_degenerate():
    # a label seen twice < 3 folds: plain folds; the folds without the third query train a constant router
    cv = cross_validate(["$x^2$", "$y^3$", "def f(): return 1"], [[1.0, 2.0], [1.0, 2.0], [2.0, 1.0]], ["a", "b"],
                        folds=3)
    assert cv["splitter"] == "kfold" and cv["folds"] == 3 and cv["label_counts"] == {"a": 2, "b": 1}
    assert cv["majority_accuracy"] == pytest.approx(2 / 3) and cv["routing_regret"] >= 0
    with pytest.raises(RouterError, match="needs >= 2 queries"):
        cross_validate(["one"], [[1.0, 2.0]], ["a", "b"])


def test_save_checks_before_writing(tmp_path):
    model = RouterModel.fit(["a", "b"], [[1.0, 2.0], [1.0, 2.0]], ["x", "y"], "gamma", info={"acc": np.float64(0.5)})
    save_routers(tmp_path / "ok", {"gamma": model}, {"counts": np.arange(2)})   # numpy in info/meta: as JSON
    assert load_routers(tmp_path / "ok")[1] == {"counts": [0, 1]}
    with pytest.raises(TypeError):
        save_routers(tmp_path / "bad", {"gamma": model}, {"x": object()})
    with pytest.raises(ValueError, match="differs"):
        save_routers(tmp_path / "bad", {"other": model}, {})
    assert not (tmp_path / "bad").exists()
