"""Every run's policy, built in one place (the study, bench_joint and the load study share it).

    factory = PolicyFactory(drafters, draft_calls(pool), seed=0, priors=..., oracle=...)
    policy = factory.build(spec)          # spec: specsel.study.executor.RunSpec

A policy owns its lifecycle: the executor calls `seek` before each batch and `restore` with the
batches it already decoded (specsel.core.policy.ArmPolicy); nothing here reaches into a policy's
fields.
"""
from __future__ import annotations

from typing import Callable, Sequence

from specsel.core.arms import Arm
from specsel.core.policy import ArmPolicy
from specsel.core.runs import OBJECTIVE
from specsel.study.executor import RunSpec


class PerQueryArms(ArmPolicy):
    """Each query plays one fixed arm, `arm_of(stream position)`: the per-query oracle, replayed live."""

    def __init__(self, arm_of: Callable[[int], Arm]):
        self.arm_of = arm_of
        self.query, self.rows = 0, {}

    def seek(self, query: int) -> None:
        self.query = int(query)

    def start(self, n_rows: int) -> None:
        self.rows = {r: self.arm_of(self.query + r) for r in range(n_rows)}
        self.query += n_rows

    def select(self, rows: list[int]) -> list[Arm]:
        return [self.rows[r] for r in rows]


class PolicyFactory:
    """Builds the policy of a RunSpec (kinds: autoregressive, fixed, fullinfo, dynamic_gamma, rule and
    table (specsel.learners.load_rules), oracle, factored, learner).

    `draft_calls` ({drafter: call}, specsel.core.drafting.draft_calls) lets throughput learners cost
    a family's shared call once; `priors(spec)` gives the router rows' prior of a query (a function
    of its stream position, or None); `oracle(spec, bsz)` gives, for a run of kind "oracle", the arm
    of each stream position (known in hindsight from another run's records at that batch size)."""

    def __init__(self, drafters: Sequence[str], draft_calls: dict[str, str] | None = None, seed: int = 0,
                 priors: Callable[[RunSpec], Callable | None] | None = None,
                 oracle: Callable[[RunSpec, int], Callable[[int], Arm]] | None = None):
        self.drafters, self.calls, self.seed = list(drafters), draft_calls, seed
        self.priors = priors or (lambda spec: None)
        self.oracle = oracle

    def build(self, spec: RunSpec, bsz: int | None = None) -> ArmPolicy | Arm:
        options = dict(spec.options)
        if spec.kind == "autoregressive":
            return Arm.autoregressive()             # one arm for every row (the engine's FixedArms)
        if spec.kind in ("fixed", "fullinfo"):
            return Arm.parse(spec.arm)
        if spec.kind == "dynamic_gamma":
            from specsel.learners.dynamic_gamma import DynamicGamma
            return DynamicGamma(spec.arm, **options)
        if spec.kind == "rule":
            from specsel.learners.load_rules import BatchRule
            return BatchRule(Arm.parse(spec.arm), options["max_rows"])
        if spec.kind == "table":
            from specsel.learners.load_rules import GammaTable
            return GammaTable(spec.arm, dict(options["table"]))
        if spec.kind == "oracle":
            if self.oracle is None:
                raise ValueError(f"run {spec.name}: an oracle run needs the records it is known from")
            return PerQueryArms(self.oracle(spec, bsz))
        if spec.kind == "factored":
            from specsel.learners.factored import FactoredHedge
            return FactoredHedge(self.drafters, spec.gammas, seed=self.seed, draft_calls=self.calls,
                                 learner=spec.learner or "hedgespec", priors=self.priors(spec), **options)
        if spec.kind == "learner":
            from specsel.learners.policy import LearnerPolicy
            return LearnerPolicy(spec.learner, [Arm.parse(a) for a in spec.arms], self.drafters,
                                 objective=OBJECTIVE[spec.setting], seed=self.seed, draft_calls=self.calls,
                                 priors=self.priors(spec), **options)
        raise ValueError(f"run {spec.name}: no policy of kind {spec.kind!r}")

