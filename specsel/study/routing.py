"""A prompt router in the study (``specsel eval --router``): which router, what it tells each
query, and how that becomes the prior of the router rows (specsel.learners.routed).

The router (specsel.router) maps a query's user text to probabilities over the arms it was
fitted on. In the drafter setting, and for the joint setting's factored HedgeSpec (a learner
over drafters), they are summed per drafter; the joint setting's ``router`` row plays the
router's joint arm. Every prior is mixed with a uniform floor (``ROUTER_FLOOR``), so no arm's
weight is 0 and a wrong router can be overruled (specsel.learners.routed).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np

from specsel.core.arms import Arm
from specsel.study.config import StudyError

ROUTER_FLOOR = 0.1      # prior = 0.9 * router + 0.1 * uniform (set by reasoning, not tuned)
ROUTER_FILES = ("router.json", "router.safetensors")


def router_folder(spec: str, target: str | None = None, pool_path: str | None = None) -> Path:
    """The folder of --router: 'default' is the router shipped for the embedded target's default
    pool; anything else is a folder written by `specsel router fit`."""
    if spec == "default":
        from drafters.pool import ROUTER_DIR
        from specsel.modeling.target import EMBEDDED_DEFAULT
        if pool_path is not None or (target not in (None, "", EMBEDDED_DEFAULT)):
            raise StudyError("--router default was fitted for the embedded target's default pool; for your own "
                             "target or --pool fit one (specsel router collect, then specsel router fit)")
        return ROUTER_DIR
    folder = Path(spec).expanduser()
    if not (folder / "router.json").is_file():
        raise StudyError(f"--router {spec}: no router.json there; pass a folder written by `specsel router fit`, "
                         "or --router default")
    return folder


def router_record(folder: Path) -> dict:
    """config.json's record of the router: where it was and what it is (its files' sha256); a
    --resume with another router is refused (specsel.study.store.IDENTITY)."""
    h = hashlib.sha256()
    for name in ROUTER_FILES:
        h.update((folder / name).read_bytes())
    return {"path": str(folder), "sha256": h.hexdigest()}


def load_study_router(folder: Path) -> dict:
    """{setting: RouterModel} of a router folder (a one-line StudyError when it is bad)."""
    from specsel.router import RouterError, load_routers
    try:
        models, _ = load_routers(folder)
    except RouterError as exc:
        raise StudyError(str(exc)) from None
    return models


def _floor(p: np.ndarray) -> np.ndarray:
    """Mix with the uniform floor: (1 - f) p + f / K, rows summing to 1 (RouterModel.prior does the
    same for arms matched by name; drafters need the router's arms summed first)."""
    p = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-12)
    return (1.0 - ROUTER_FLOOR) * p + ROUTER_FLOOR / p.shape[1]


def drafter_probs(model, texts: Sequence[str], drafters: Sequence[str]) -> np.ndarray:
    """[n, len(drafters)]: the router's probabilities summed per drafter (its autoregressive
    arm and drafters not in `drafters` dropped), before the floor."""
    owner = [Arm.parse(a).drafter for a in model.arms]
    if not any(d in drafters for d in owner):
        raise StudyError(f"the router knows none of the study's drafters ({', '.join(drafters)}; it was fitted on "
                         f"{', '.join(model.arms)}); refit it on this pool (specsel router fit)")
    probs = model.predict_proba(list(texts))
    out = np.zeros((len(texts), len(drafters)))
    for k, d in enumerate(owner):
        if d in drafters:
            out[:, list(drafters).index(d)] += probs[:, k]
    return out


def study_priors(models: dict, texts: Sequence[str], settings: dict, drafters: Sequence[str]) -> dict:
    """The priors of the router rows, per stream position: {(setting, "drafters"|"arms"): [n, K]}.
    "drafters" is over the pool's drafters (the drafter setting, whose arms are the drafters at one
    gamma, and the joint setting's factored HedgeSpec); "arms" over the joint setting's arms."""
    from specsel.router import RouterError

    out = {}
    for setting, spec in settings.items():
        model = models.get(setting)
        if model is None:
            raise StudyError(f"the router has no model for the {setting} setting (it has: {', '.join(models)}); "
                             "refit it from a full-information run (specsel router fit fits every setting)")
        out[setting, "drafters"] = _floor(drafter_probs(model, texts, drafters))
        if setting == "joint":                  # by arm name, floor included (RouterModel.prior)
            try:
                out[setting, "arms"] = model.prior(list(texts), spec["arms"], floor=ROUTER_FLOOR)
            except RouterError as exc:
                raise StudyError(str(exc)) from None
    return out
