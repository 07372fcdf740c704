"""The study's vocabulary, written once: its settings, their objectives, the learners it
compares and the names of its runs (the study writes them, the evaluators read them)."""
from __future__ import annotations

SETTINGS = ("drafter", "joint")
# drafter: the drafters at one gamma, cost = target rounds; joint: drafters x gammas, tokens per second
OBJECTIVE = {"drafter": "length", "joint": "throughput"}
# the learners a study runs by default, in the order its tables list them (keys of specsel.learners.LEARNERS)
STUDY_LEARNERS = ("ucbspec", "exp3spec", "hedgespec", "epsilon_greedy", "round_robin")
RUN_KINDS = ("autoregressive", "fixed", "fullinfo", "learner")


def run_name(kind: str, setting: str | None = None, learner: str | None = None, arm: str | None = None) -> str:
    """autoregressive | fixed/<arm> | fullinfo/<arm> | <setting>/<learner>. The autoregressive arm
    played fixed is the autoregressive baseline run."""
    if kind == "autoregressive" or (kind == "fixed" and arm == "autoregressive"):
        return "autoregressive"
    if kind in ("fixed", "fullinfo"):
        return f"{kind}/{arm}"
    if kind == "learner":
        return f"{setting}/{learner}"
    raise ValueError(f"unknown run kind {kind!r}")
