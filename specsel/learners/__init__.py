"""Online arm-selection policies (numpy only, never torch).

Every learner has ``select() -> int``, ``update(played, reward, all_rewards=None)``
and ``reset()``; ``full_information`` says whether it needs ``all_rewards``.
``make_learner(name, n_arms, reward_range=..., seed=..., **params)`` builds one
by name.
"""
from __future__ import annotations

from .base import Learner
from .baselines import EpsilonGreedy, Fixed, RoundRobin
from .exp3spec import EXP3Spec
from .hedgespec import HedgeSpec, normalhedge_weights
from .routed import RoutedArm, RouterHedgeSpec
from .ucbspec import UCBSpec

LEARNERS: dict[str, type[Learner]] = {
    "ucbspec": UCBSpec,
    "exp3spec": EXP3Spec,
    "hedgespec": HedgeSpec,
    "fixed": Fixed,
    "round_robin": RoundRobin,
    "epsilon_greedy": EpsilonGreedy,
    "router": RoutedArm,
    "router_hedgespec": RouterHedgeSpec,
}


def make_learner(name: str, n_arms: int, **kw) -> Learner:
    """Build the learner called ``name`` (see ``LEARNERS``); ``kw`` holds
    ``reward_range`` (required), ``seed`` and the policy's own parameters
    (``delta``, ``sample``, ``arm``, ``epsilon``, ``prior``)."""
    try:
        cls = LEARNERS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown learner {name!r}; choose from {sorted(LEARNERS)}") from None
    if "reward_range" not in kw:
        raise TypeError("make_learner needs reward_range=(low, high)")
    return cls(n_arms, **kw)


__all__ = ["Learner", "UCBSpec", "EXP3Spec", "HedgeSpec", "Fixed", "RoundRobin", "EpsilonGreedy",
           "RoutedArm", "RouterHedgeSpec", "LEARNERS", "make_learner", "normalhedge_weights"]
