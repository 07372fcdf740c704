"""The bottom layer: types every other layer shares (arms, sampling settings, round records,
the drafter and policy protocols, seed formulas, run names). It imports nothing else of the
project; see docs/design.md for the layers above it.

Import the modules directly (``from specsel.core.arms import Arm``): this face imports
nothing, so ``import specsel.learners`` stays free of torch.
"""
