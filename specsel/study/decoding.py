"""The usual Decoder of the executor: one SpecEngine, each run's policy from the PolicyFactory."""
from __future__ import annotations

from typing import Sequence

from specsel.core.arms import Arm
from specsel.study.executor import Decoder, RunSpec
from specsel.study.policies import PolicyFactory


class EngineDecoder(Decoder):
    """Decode every run with `engine` (greedy unless `sampling`); the runs of a batch share its target
    prefill (its seconds are still charged to each, specsel.engine.prefill). Full-information runs
    score `score_every` rounds at once unless their RunSpec says otherwise."""

    def __init__(self, engine, factory: PolicyFactory, max_new_tokens: int, sampling=None, score_every: int = 1,
                 warm_gamma: int = 4):
        from specsel.engine import PrefillCache

        self.engine, self.factory = engine, factory
        self.max_new_tokens, self.sampling, self.score_every = max_new_tokens, sampling, score_every
        self.warm_gamma = warm_gamma
        self.prefills = PrefillCache()

    def warm_up(self, prompt: Sequence[int]) -> None:
        """One-time costs (allocator, kernels) of plain decoding and of every drafter."""
        self.engine.generate([list(prompt)], Arm.autoregressive(), max_new_tokens=4)
        for d in self.engine.drafters:
            self.engine.generate([list(prompt)], Arm(d, self.warm_gamma), max_new_tokens=4)

    def policy(self, spec: RunSpec, bsz: int):
        return self.factory.build(spec, bsz)

    def decode(self, spec: RunSpec, policy, prompts: list[list[int]], seed: int):
        full = spec.feedback == "full"
        every = (spec.score_every or self.score_every) if full else 1
        return self.engine.generate(prompts, policy, max_new_tokens=self.max_new_tokens, sampling=self.sampling,
                                    seed=seed, feedback=spec.feedback, score_every=every, prefill_cache=self.prefills)
