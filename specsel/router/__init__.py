"""A learned router: a text classifier that picks, per query, the arm (drafter name such as
``eagle@4`` or ``autoregressive``) that was cheapest on similar queries offline.

:mod:`specsel.router.features` turns a prompt into features (hashed n-grams and shape counts);
:mod:`specsel.router.model` fits, cross-validates, saves and loads routers. Routers are stored as
safetensors arrays plus JSON (no pickle), so loading a downloaded router cannot run code.
"""
from specsel.router.features import SHAPE_FEATURES, build_pipeline, query_text, shape_features
from specsel.router.model import RouterError, RouterModel, cross_validate, load_routers, save_routers

__all__ = ["SHAPE_FEATURES", "RouterError", "RouterModel", "build_pipeline", "cross_validate", "load_routers",
           "query_text", "save_routers", "shape_features"]
