"""Learners that start from a router's prior over the arms (specsel.router): a prompt classifier
fitted offline says, before the first token, which arm a query wants.

* ``router`` (RoutedArm) plays the prior's favourite arm for the whole query and learns nothing:
  the routing baseline.
* ``router_hedgespec`` (RouterHedgeSpec) is HedgeSpec whose NormalHedge potential weighs the arms
  by the prior (specsel.learners.hedgespec.normalhedge_weights, AdaNormalHedge's prior):

      w_i ∝ pi_i ([R_i]_+ / c) exp([R_i]_+^2 / (2c)),   sum_i pi_i exp([R_i]_+^2 / (2c)) = e,

  so it opens on the router's arm and is corrected online with full information. The prior does
  not decay: it multiplies each arm's weight by a constant ``pi_i``, and what fades is its share
  of the decision as the arms' regrets part (an arm the router ranks lower needs
  ``[R_i]_+^2 - [R_j]_+^2 > 2c log(pi_j / pi_i)`` to overtake). With discounted regret (HedgeSpec's
  default) the regrets stay bounded, so a confident prior keeps a steady pull; the router's
  probabilities are mixed with a uniform floor (``RouterModel.prior``) so every ratio
  ``pi_j / pi_i`` stays bounded and a wrong router is overruled within a few positions.

Both take ``prior`` (one positive weight per arm, per query: LearnerPolicy's ``priors``).
"""
from __future__ import annotations

import numpy as np

from .baselines import Fixed
from .hedgespec import HedgeSpec, check_prior


class RoutedArm(Fixed):
    """The fixed arm ``argmax(prior)`` (the lowest index on ties), chosen per query by the router."""

    name = "router"

    def __init__(self, n_arms, reward_range, seed=None, prior=None):
        if prior is None:
            raise ValueError("the router learner needs a prior over its arms (specsel eval --router DIR)")
        self.prior = check_prior(prior, int(n_arms))
        super().__init__(n_arms, reward_range, seed, arm=int(np.argmax(self.prior)))


class RouterHedgeSpec(HedgeSpec):
    """HedgeSpec with the router's prior in its potential (module docstring)."""

    name = "router_hedgespec"

    def __init__(self, n_arms, reward_range, seed=None, prior=None, **kw):
        if prior is None:
            raise ValueError("router_hedgespec needs a prior over its arms (specsel eval --router DIR)")
        super().__init__(n_arms, reward_range, seed, prior=prior, **kw)
