"""What a study runs: its runs (RunSpec), the full-information source run, the batches and
the run list of each phase, and the config.json record of the plan.

Per batch size the same prompts, in the same batches, with the same seeds, are decoded by

* phase 1, the full-information run (``fullinfo_run``): HedgeSpec in the ``drafter`` setting
  with ``feedback="full"`` (or a fixed arm with full feedback when HedgeSpec is not asked for);
* phase 2 (``live_runs``): the autoregressive baseline, the fixed arms chosen from phase 1,
  every learner of every setting (HedgeSpec of the source's setting again, now timed side by side
  with the baseline: its output and records are those of phase 1) and, in the joint setting,
  dynamic_gamma on the drafter of the best speculative joint arm.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from typing import Mapping, Sequence

from specsel.core.arms import arm_name
from specsel.core.runs import JOINT_BASELINES, OBJECTIVE, run_name
from specsel.data.user_domain import user_domain_records
from specsel.study.config import StudyConfig
from specsel.study.executor import RunSpec
from specsel.study.items import StudyItem
from specsel.study.store import CONFIG_VERSION


def fullinfo_run(cfg: StudyConfig, drafters: Sequence[str]) -> RunSpec:
    """The run whose records hold every drafter's acceptance (the oracle and fixed arms follow
    from it): HedgeSpec of the drafter setting (joint without it), scoring every drafter in every
    window, else the first drafter fixed. Decoded once per batch, not timed."""
    if "hedgespec" in cfg.learners:
        setting = "drafter" if "drafter" in cfg.settings else "joint"
        return RunSpec(run_name("fullinfo", setting, "hedgespec"), "learner", setting=setting, learner="hedgespec",
                       arms=tuple(cfg.arms(setting, drafters)), options=(("lazy_scoring", False),), timed=False)
    arm = arm_name(drafters[0], cfg.gamma)
    return RunSpec(run_name("fullinfo", arm=arm), "fullinfo", arm=arm, timed=False)


def learner_run(cfg: StudyConfig, drafters: Sequence[str], setting: str, learner: str) -> RunSpec:
    """A learner's timed run; the joint setting's HedgeSpec is the factored policy unless
    --joint-hedgespec arms (specsel.learners.factored)."""
    factored = setting == "joint" and learner in ("hedgespec", "router_hedgespec") and cfg.joint_hedgespec == "factored"
    return RunSpec(run_name("learner", setting, learner), "factored" if factored else "learner", setting=setting,
                   learner=learner, arms=tuple(cfg.arms(setting, drafters)), gammas=tuple(cfg.gammas))


def live_runs(cfg: StudyConfig, drafters: Sequence[str], fixed: Mapping[str, Sequence[str]],
              dynamic_drafter: str | None = None) -> list[RunSpec]:
    """Phase 2: autoregressive, the fixed arms of every setting (`fixed`: setting -> arms, each
    arm once), every learner of every setting, and dynamic_gamma on `dynamic_drafter` in the
    joint setting."""
    runs = [RunSpec("autoregressive", "autoregressive", arm="autoregressive")]
    for arm in dict.fromkeys(a for s in cfg.settings for a in fixed[s]):
        if arm == "autoregressive":                 # the baseline above plays it
            continue
        runs.append(RunSpec(run_name("fixed", arm=arm), "fixed", arm=arm))
    runs += [learner_run(cfg, drafters, setting, learner) for setting in cfg.settings for learner in cfg.learners]
    if "joint" in cfg.settings and dynamic_drafter is not None:
        for name in JOINT_BASELINES:
            runs.append(RunSpec(run_name("learner", "joint", name), name, arm=dynamic_drafter, setting="joint",
                                learner=name))
    return runs


def dynamic_gamma_drafter(ranking: Sequence[str]) -> str | None:
    """The drafter dynamic_gamma plays: that of the best speculative arm in `ranking` (best first)."""
    from specsel.core.arms import Arm
    return next((Arm.parse(a).drafter for a in ranking if not Arm.parse(a).is_autoregressive), None)


def prompt_hash(prompt: Sequence[int]) -> str:
    """A short hash of a prompt's token ids: a resume whose prompts changed is refused (store.IDENTITY)."""
    import hashlib
    return hashlib.sha256(",".join(str(int(t)) for t in prompt).encode()).hexdigest()[:16]


def target_record(target) -> dict:
    """The target's dtype and device type as loaded ({"dtype": "float32", "device": "cpu"}), read from
    its parameters, so a default chosen by device is recorded too; {} for a target without any."""
    first = next(iter(target.parameters()), None) if hasattr(target, "parameters") else None
    if first is None:
        return {}
    return {"dtype": str(first.dtype).removeprefix("torch."), "device": first.device.type}


def specsel_version() -> str:
    """The installed specsel's version: part of a study's resume identity (store.IDENTITY)."""
    import specsel
    return specsel.__version__


FINGERPRINT_SAMPLES = 256       # evenly spaced elements of each parameter tensor in the checksum
UNSTABLE_CONFIG_KEYS = ("transformers_version", "torch_dtype", "dtype")     # not the model itself


def target_fingerprint(target) -> str | None:
    """A short fingerprint (16 hex digits) of the target model: sha256 over its config (without
    the keys starting with "_", such as its path, nor the transformers version or dtype), every
    parameter's name and shape, and FINGERPRINT_SAMPLES evenly spaced values of each parameter,
    taken at bfloat16 precision, so float32 weights loaded as bfloat16 fingerprint alike (float16
    may not; the dtype is checked on its own). Another model, or retrained weights, differ. No pass
    over the weights: about 5 ms for a 135M model on a CPU. None for a target without parameters."""
    import hashlib

    import torch

    params = list(target.named_parameters()) if hasattr(target, "named_parameters") else []
    if not params:
        return None
    h = hashlib.sha256()
    config = getattr(target, "config", None)
    if hasattr(config, "to_dict"):
        fields = {k: v for k, v in config.to_dict().items() if not k.startswith("_") and k not in UNSTABLE_CONFIG_KEYS}
        h.update(json.dumps(fields, sort_keys=True, default=str).encode())
    samples = []
    with torch.no_grad():
        for name, p in params:
            h.update(f"{name}:{tuple(p.shape)};".encode())
            flat = p.detach().reshape(-1)
            step = max(1, flat.numel() // FINGERPRINT_SAMPLES)
            samples.append(flat[::step][:FINGERPRINT_SAMPLES].to(torch.bfloat16))
        values = torch.cat(samples).view(torch.int16).cpu().numpy()
    h.update(values.tobytes())
    return h.hexdigest()[:16]


def study_record(cfg: StudyConfig, drafters: Sequence[str], items: Sequence[StudyItem], source: RunSpec,
                 weights: str | None, replay_exact: Mapping[str, bool], target=None) -> dict:
    """The config.json record of a study: its options, arms and objective per setting, the query
    stream (each prompt's hash), the full-information run and which drafters replay exactly; the
    target's dtype, device and fingerprint (`target`: the loaded model); the specsel version; and,
    when the stream holds user domains (NAME=PATH), each one's file and its sha256."""
    users = user_domain_records(list(dict.fromkeys(it.domain for it in items)))
    return {**asdict(cfg), "version": CONFIG_VERSION, "drafters": list(drafters), "weights": weights,
            "specsel_version": specsel_version(),
            **({} if target is None else {**target_record(target), "target_fingerprint": target_fingerprint(target)}),
            "settings": {s: {"arms": cfg.arms(s, drafters), "objective": OBJECTIVE[s]} for s in cfg.settings},
            "bsz": list(cfg.bsz), "learners": list(cfg.learners), "gammas": list(cfg.gammas),
            "queries": [{"qid": it.qid, "domain": it.domain, "index": i, "prompt_hash": prompt_hash(it.prompt)}
                        for i, it in enumerate(items)],
            "fullinfo_run": source.name, "replay_exact": dict(replay_exact),
            **({"user_domains": users} if users else {})}    # absent without user domains: older studies resume
