"""A per-setting router (text -> arm), its offline cross-validation, and its pickle-free file format.

Labels come from per-query costs (lower is better): a query's label is its cheapest arm. On disk a
set of routers is two files: ``router.safetensors`` (the float32 arrays) and ``router.json`` (arm
names, classes, hyper-parameters, training facts and the safetensors file's sha256). Loading
rebuilds the pipeline with :func:`build_pipeline` and assigns the arrays, so a router file holds
data only and cannot run code.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from safetensors.numpy import load, save
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import Pipeline

from specsel.router.features import SHAPE_FEATURES, build_pipeline, query_text

FORMAT = "specsel-router/1"
JSON_NAME, TENSORS_NAME = "router.json", "router.safetensors"
_REFIT = "refit with `specsel router fit`"
_TENSORS = ("coef", "intercept", "scaler_mean", "scaler_scale", "scaler_var")


class RouterError(ValueError):
    """A router file is missing, malformed or tampered with, or a router does not fit the arm pool."""


def _texts(texts: Sequence[Any]) -> list[str]:
    if isinstance(texts, str):
        raise ValueError("router: pass a list of texts (or chats), not a single str")
    return [query_text(t) for t in texts]


def _check_arms(arms: Sequence[str]) -> list[str]:
    arms = list(arms)
    if not arms or not all(isinstance(a, str) and a for a in arms) or len(set(arms)) != len(arms):
        raise ValueError(f"router: arms must be distinct non-empty names, got {arms}")
    return arms


def _check_costs(costs: Any, n: int, arms: list[str]) -> np.ndarray:
    costs = np.asarray(costs, dtype=np.float64)
    if costs.shape != (n, len(arms)):
        raise ValueError(f"router: costs have shape {costs.shape}, expected (n_queries={n}, n_arms={len(arms)})")
    if n == 0 or not np.isfinite(costs).all():
        raise ValueError("router: costs must be a non-empty, finite [n_queries, n_arms] array")
    return costs


def best_fixed_order(costs: np.ndarray) -> np.ndarray:
    """Arm indices from least to most total cost over all queries (ties: lower index first)."""
    return np.lexsort((np.arange(costs.shape[1]), costs.sum(axis=0)))


def cost_labels(costs: np.ndarray) -> np.ndarray:
    """Each query's cheapest arm; among equally cheap arms the one first in :func:`best_fixed_order`."""
    rank = np.empty(costs.shape[1], dtype=np.int64)
    rank[best_fixed_order(costs)] = np.arange(costs.shape[1])
    cheapest = np.isclose(costs, costs.min(axis=1, keepdims=True), rtol=1e-9, atol=1e-12)
    return np.where(cheapest, rank, costs.shape[1]).argmin(axis=1)   # the best-ranked cheapest arm


@dataclass
class RouterModel:
    """The router of one setting: predicts, for a query text, a distribution over ``arms``.

    ``classes`` are the arms that occurred as a label, in ``arms`` order; the others always get
    probability 0. ``pipeline`` is None for a constant router (one label only: probability 1).
    """

    setting: str
    arms: list[str]
    classes: list[str]
    pipeline: Pipeline | None = field(default=None, repr=False, compare=False)
    C: float = 1.0
    n_features: int = 2 ** 14
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def constant(self) -> bool:
        return self.pipeline is None

    @classmethod
    def fit(cls, texts: Sequence[Any], costs: Any, arms: Sequence[str], setting: str, C: float = 1.0,
            seed: int = 0, info: dict[str, Any] | None = None) -> RouterModel:
        """Fit on ``costs[q, a]`` (lower is better) of ``texts[q]`` (str or chat) under ``arms[a]``."""
        texts, arms = _texts(texts), _check_arms(arms)
        costs = _check_costs(costs, len(texts), arms)
        y = cost_labels(costs)
        seen = sorted(set(y.tolist()))
        facts = {"n_queries": len(texts), "label_counts": {a: int((y == i).sum()) for i, a in enumerate(arms)}}
        model = cls(setting, arms, [arms[i] for i in seen], None, float(C), 2 ** 14, {**(info or {}), **facts})
        if len(seen) > 1:
            model.pipeline = build_pipeline(C=C, n_features=model.n_features, seed=seed).fit(texts, y)
        return model

    def predict_proba(self, texts: Sequence[Any]) -> np.ndarray:
        """``[n, len(arms)]`` probabilities over all of ``self.arms``; rows sum to 1."""
        texts = _texts(texts)
        out = np.zeros((len(texts), len(self.arms)))
        idx = [self.arms.index(c) for c in self.classes]
        if self.pipeline is None:
            out[:, idx[0]] = 1.0
        elif texts:
            out[:, idx] = self.pipeline.predict_proba(texts)   # classifier columns are arm indices, sorted
        return out

    def predict(self, texts: Sequence[Any]) -> list[str]:
        """The most probable arm of each text."""
        return [self.arms[i] for i in self.predict_proba(texts).argmax(axis=1)]

    def prior(self, texts: Sequence[Any], arms: Sequence[str], floor: float = 0.1) -> np.ndarray:
        """``[n, len(arms)]`` probabilities over the caller's ``arms``, matched by name.

        Arms the router does not know get 0; a row is renormalised over the known arms (uniform
        over them if the router put all its mass elsewhere), then mixed with uniform:
        ``(1 - floor) * p + floor / K``, so every arm keeps at least ``floor / K``.
        """
        arms = _check_arms(arms)
        if not 0.0 <= floor <= 1.0:
            raise ValueError(f"router: floor must be in [0, 1], got {floor}")
        known = [a in self.arms for a in arms]
        if not any(known):
            raise RouterError(f"router '{self.setting}' knows arms {self.arms} but the pool has {arms}: "
                              f"none in common; refit the router on this pool (`specsel router fit`)")
        p = self.predict_proba(texts)
        q = np.zeros((p.shape[0], len(arms)))
        for j, a in enumerate(arms):
            if known[j]:
                q[:, j] = p[:, self.arms.index(a)]
        mass = q.sum(axis=1, keepdims=True)
        q = np.where(mass > 0, q / np.where(mass > 0, mass, 1.0), np.asarray(known, float) / sum(known))
        return (1.0 - floor) * q + floor / len(arms)


def cross_validate(texts: Sequence[Any], costs: Any, arms: Sequence[str], folds: int = 5, C: float = 1.0,
                   seed: int = 0) -> dict[str, Any]:
    """Out-of-fold routing quality: each query is routed by a router fitted without it.

    Stratified folds when every label occurs ``folds`` times, else plain shuffled folds
    (``min(folds, n)``). Regrets are mean ``cost[q, chosen] - min_a cost[q, a]``, >= 0.
    """
    texts, arms = _texts(texts), _check_arms(arms)
    costs = _check_costs(costs, len(texts), arms)
    n, y = len(texts), cost_labels(costs)
    if n < 2 or folds < 2:
        raise RouterError(f"router: cross-validation needs >= 2 queries and >= 2 folds, got n={n}, folds={folds}")
    counts = np.bincount(y, minlength=len(arms))
    if counts[counts > 0].min() >= folds:
        splitter, splits = StratifiedKFold(folds, shuffle=True, random_state=seed), "stratified"
    else:
        splitter, splits = KFold(min(folds, n), shuffle=True, random_state=seed), "kfold"
    pred = np.empty(n, dtype=np.int64)
    for train, test in splitter.split(np.zeros(n), y):
        model = RouterModel.fit([texts[i] for i in train], costs[train], arms, "cv", C=C, seed=seed)
        pred[test] = model.predict_proba([texts[i] for i in test]).argmax(axis=1)
    order = best_fixed_order(costs)
    majority = int(order[np.argmax(counts[order])])   # most common label; ties go to the better fixed arm
    oracle, rows = costs.min(axis=1), np.arange(n)
    return {
        "n": n, "folds": splitter.get_n_splits(), "splitter": splits,
        "accuracy": float((pred == y).mean()), "majority_accuracy": float((y == majority).mean()),
        "routing_regret": float((costs[rows, pred] - oracle).mean()),
        "majority_regret": float((costs[:, majority] - oracle).mean()),
        "best_fixed_regret": float((costs[:, order[0]] - oracle).mean()),
        "oracle_cost": float(oracle.mean()), "routing_cost": float(costs[rows, pred].mean()),
        "label_counts": {a: int(c) for a, c in zip(arms, counts)},
    }


def _parts(pipe: Pipeline) -> tuple[Any, Any]:
    """The fitted steps of :func:`build_pipeline`: the shape scaler and the classifier."""
    return pipe.named_steps["features"].named_transformers["shape"].named_steps["scale"], pipe.named_steps["clf"]


def _plain(o: Any) -> Any:
    """numpy scalars and arrays in ``info`` / ``meta`` as JSON numbers and lists."""
    if isinstance(o, (np.generic, np.ndarray)):
        return o.tolist()
    raise TypeError(f"router: {type(o).__name__} in info/meta is not JSON-serialisable")


def save_routers(folder: str | Path, models: dict[str, RouterModel], meta: dict[str, Any]) -> None:
    """Write ``folder/router.safetensors`` (float32 arrays) and ``folder/router.json`` (the rest).

    Both are built in memory first, so a failure (e.g. ``info`` not JSON-serialisable) writes nothing.
    """
    folder = Path(folder)
    tensors: dict[str, np.ndarray] = {}
    entries: dict[str, Any] = {}
    for setting, m in models.items():
        if setting != m.setting:
            raise ValueError(f"router: models key {setting!r} differs from its router's setting {m.setting!r}")
        entry = {"arms": m.arms, "classes": m.classes, "constant": m.constant, "C": m.C,
                 "n_features": m.n_features, "shape_features": list(SHAPE_FEATURES), "info": m.info}
        if not m.constant:
            scaler, clf = _parts(m.pipeline)
            arrays = (clf.coef_, clf.intercept_, scaler.mean_, scaler.scale_, scaler.var_)
            for name, a in zip(_TENSORS, arrays):
                tensors[f"{setting}.{name}"] = np.ascontiguousarray(a, dtype=np.float32)
            entry["n_samples_seen"] = int(scaler.n_samples_seen_)
        entries[setting] = entry
    blob = save(tensors, metadata={"format": FORMAT})
    doc = {"format": FORMAT, "sha256": hashlib.sha256(blob).hexdigest(), "meta": meta, "models": entries}
    text = json.dumps(doc, indent=1, default=_plain) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / TENSORS_NAME).write_bytes(blob)
    (folder / JSON_NAME).write_text(text)


def _refuse(path: Path, problem: str) -> RouterError:
    return RouterError(f"{path}: {problem}; {_REFIT}")


def _field(entry: dict, key: str, kind: type | tuple[type, ...], where: Path, setting: str) -> Any:
    value = entry.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise _refuse(where, f"router '{setting}' has no valid {key!r}")
    return value


def _rebuild(setting: str, entry: Any, tensors: dict[str, np.ndarray], where: Path) -> RouterModel:
    """A :class:`RouterModel` from its JSON entry and its arrays, every field checked first."""
    if not isinstance(entry, dict):
        raise _refuse(where, f"router '{setting}' is not an object")
    arms = _field(entry, "arms", list, where, setting)
    classes = _field(entry, "classes", list, where, setting)
    constant = _field(entry, "constant", bool, where, setting)
    C, n_features = _field(entry, "C", (int, float), where, setting), _field(entry, "n_features", int, where, setting)
    info = _field(entry, "info", dict, where, setting)
    if not arms or not all(isinstance(a, str) and a for a in arms) or len(set(arms)) != len(arms):
        raise _refuse(where, f"router '{setting}' arms {arms} are not distinct names")
    if not classes or not set(classes) <= set(arms) or classes != [a for a in arms if a in classes]:
        raise _refuse(where, f"router '{setting}' classes {classes} are not a subset of its arms {arms} in order")
    if entry.get("shape_features") != list(SHAPE_FEATURES):
        raise _refuse(where, f"router '{setting}' was fitted on shape features {entry.get('shape_features')}, "
                             f"this code computes {list(SHAPE_FEATURES)}")
    model = RouterModel(setting, list(arms), list(classes), None, float(C), n_features, info)
    if constant != (len(classes) == 1):
        raise _refuse(where, f"router '{setting}' is marked constant={constant} with {len(classes)} classes")
    if constant:
        return model
    if n_features < 1:
        raise _refuse(where, f"router '{setting}' has n_features={n_features}")
    k, rows = len(SHAPE_FEATURES), 1 if len(classes) == 2 else len(classes)   # binary: one coefficient row
    shapes = {"coef": (rows, n_features + k), "intercept": (rows,), "scaler_mean": (k,), "scaler_scale": (k,),
              "scaler_var": (k,)}
    arrays = {}
    for name, shape in shapes.items():
        key = f"{setting}.{name}"
        if key not in tensors:
            raise _refuse(where.with_name(TENSORS_NAME), f"tensor {key!r} is missing")
        if tensors[key].shape != shape or not np.isfinite(tensors[key]).all():
            raise _refuse(where.with_name(TENSORS_NAME), f"tensor {key!r} has shape {tensors[key].shape}, "
                                                         f"expected {shape} of finite values")
        arrays[name] = tensors[key].astype(np.float64)
    model.pipeline = build_pipeline(C=C, n_features=n_features)
    scaler, clf = _parts(model.pipeline)
    scaler.mean_, scaler.scale_, scaler.var_ = arrays["scaler_mean"], arrays["scaler_scale"], arrays["scaler_var"]
    scaler.n_samples_seen_ = _field(entry, "n_samples_seen", int, where, setting)
    scaler.n_features_in_ = k
    clf.coef_, clf.intercept_, clf.n_features_in_ = arrays["coef"], arrays["intercept"], n_features + k
    clf.classes_ = np.asarray([arms.index(c) for c in classes])   # labels are arm indices, as in fit
    return model


def load_routers(folder: str | Path) -> tuple[dict[str, RouterModel], dict[str, Any]]:
    """The routers and ``meta`` written by :func:`save_routers`; refuses anything it cannot vouch for."""
    folder = Path(folder)
    jpath, tpath = folder / JSON_NAME, folder / TENSORS_NAME
    for path in (jpath, tpath):
        if not path.is_file():
            raise _refuse(path, "no such router file")
    try:
        doc = json.loads(jpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _refuse(jpath, f"invalid JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise _refuse(jpath, f"unknown format {doc.get('format') if isinstance(doc, dict) else None!r}, "
                             f"expected {FORMAT!r}")
    if not isinstance(doc.get("models"), dict) or not isinstance(doc.get("meta", {}), dict):
        raise _refuse(jpath, "'models' and 'meta' must be objects")
    blob = tpath.read_bytes()   # hash and parse the same bytes
    if hashlib.sha256(blob).hexdigest() != doc.get("sha256"):
        raise _refuse(tpath, f"sha256 differs from the one in {JSON_NAME} (the file was modified)")
    try:
        tensors = load(blob)
    except Exception as e:   # safetensors raises its own error types on a malformed header
        raise _refuse(tpath, f"not a safetensors file ({e})") from None
    models = {s: _rebuild(s, e, tensors, jpath) for s, e in doc["models"].items()}
    expected = {f"{s}.{n}" for s, m in models.items() if not m.constant for n in _TENSORS}
    if set(tensors) - expected:
        raise _refuse(tpath, f"unexpected tensors {sorted(set(tensors) - expected)}")
    return models, doc.get("meta", {})
