"""The study's vocabulary, written once: its settings, their objectives, the learners it
compares and the names of its runs (the study writes them, the evaluators read them)."""
from __future__ import annotations

SETTINGS = ("drafter", "joint")
# drafter: the drafters at one gamma, cost = target rounds; joint: drafters x gammas, tokens per second
OBJECTIVE = {"drafter": "length", "joint": "throughput"}
# the learners a study runs by default, in the order its tables list them (keys of specsel.learners.LEARNERS)
STUDY_LEARNERS = ("ucbspec", "exp3spec", "hedgespec", "epsilon_greedy", "round_robin")
# the learners a prompt router adds (specsel eval --router): the routing baseline and HedgeSpec from its prior
ROUTER_LEARNERS = ("router", "router_hedgespec")
# learners fed every drafter's acceptance (feedback="full"); the others hear the played arm only
FULL_INFORMATION_LEARNERS = ("hedgespec", "router_hedgespec")
RUN_KINDS = ("autoregressive", "fixed", "fullinfo", "learner")
# rows of the joint setting that are not learners: Hugging Face's dynamic draft length on one drafter
JOINT_BASELINES = ("dynamic_gamma",)


def repeat_run(name: str, k: int) -> str:
    """The name of repeat k (0-based) of a timed run: the run itself, then <run>#2, <run>#3, ..."""
    return name if k == 0 else f"{name}#{k + 1}"


def run_name(kind: str, setting: str | None = None, learner: str | None = None, arm: str | None = None) -> str:
    """autoregressive | fixed/<arm> | fullinfo/<arm> | fullinfo/<setting>/<learner> | <setting>/<learner>.
    The autoregressive arm played fixed is the autoregressive baseline run; fullinfo/<setting>/<learner>
    is a learner's full-information pass (phase 1), decoded again, timed, as <setting>/<learner>."""
    if kind == "autoregressive" or (kind == "fixed" and arm == "autoregressive"):
        return "autoregressive"
    if kind == "fullinfo" and learner is not None:
        return f"fullinfo/{setting}/{learner}"
    if kind in ("fixed", "fullinfo"):
        return f"{kind}/{arm}"
    if kind == "learner":
        return f"{setting}/{learner}"
    raise ValueError(f"unknown run kind {kind!r}")
