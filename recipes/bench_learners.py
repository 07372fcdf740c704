"""Learner benchmark: the cost of full-information feedback and of the learners themselves.

    python recipes/bench_learners.py --json results/bench_learners.json

On the embedded target with a pool of 4 drafters (n-gram and early exits of the target at
three depths), the same prompts are decoded, greedy, with the same learner (UCBSpec) two ways:
    ucbspec/bandit   feedback="bandit": only the played drafter runs
    ucbspec/full     feedback="full": every drafter catches up each round and scores every committed position
UCBSpec only uses the played arm's realised length, so both runs play the same arms and
produce the same tokens: the difference in tokens/s is the price of full information. The runs are
those of the one executor (interleaved and repeated, --repeats, default 2; specsel.study.ab), so
each ratio is taken batch by batch between runs decoded side by side.
    full_info_overhead   = 1 / (tokens/s full over bandit) - 1 = wall(full) / wall(bandit) - 1   (target <= 0.10)
    learner_update_frac  = learner select+update time per round / mean target forward time    (target < 0.01)
HedgeSpec's update cost (one NormalHedge step per committed position) is timed too (hedgespec/full).

`--pool-set default` uses the shipped pool instead (n-gram, the EAGLE head and its three LoRA
experts). `--score-every K` (K > 1) adds two round-robin runs with full information, scoring
every round vs. K rounds at a time (generate(score_every=K)); round robin ignores feedback, so
both play the same arms:
    deferred_scoring_saving = 1 - wall(K rounds at a time) / wall(every round)
"""
from __future__ import annotations

import sys
import time

from specsel.flags import add_flags, flag_parser, one_int, parse_flags, run_command


class TimedPolicy:
    """A policy whose select, timed and observe are timed (everything else passes through)."""

    def __init__(self, policy):
        self.policy, self.learner_s, self.rounds = policy, 0.0, 0

    def __getattr__(self, name):
        return getattr(self.policy, name)

    def _timed(self, method, *a):
        t0 = time.perf_counter()
        out = getattr(self.policy, method)(*a)
        self.learner_s += time.perf_counter() - t0
        return out

    def select(self, rows):
        self.rounds += 1
        return self._timed("select", rows)

    def timed(self, info):
        return self._timed("timed", info)

    def observe(self, info):
        return self._timed("observe", info)


def parse_args(argv=None):
    ap = flag_parser("bench_learners", __doc__)
    add_flags(ap, "target", "data_dir", "domains", "limit", "bsz", "max_new_tokens", "gammas", "score_every",
              "repeats", "threads", "out", "json", "no_progress", domains="humaneval", limit=8, max_new_tokens=96,
              gammas="2,4", repeats=2, out="results/bench_learners")
    ap.add_argument("--early-exit-layers", default="4,8,12", help="depths of the early-exit drafters")
    ap.add_argument("--pool-set", default="early_exit", choices=("early_exit", "default"),
                    help="early_exit: n-gram + early exits; default: the shipped pool (n-gram, EAGLE, LoRA experts)")
    args = parse_flags(ap, argv)
    from specsel.data import domains_argument
    from specsel.options import parse_ints
    args.domain_names = domains_argument(ap, args.domains)
    args.gammas, args.bsz = parse_ints(args.gammas, "--gammas"), one_int(args, "bsz")
    args.early_exit_layers = parse_ints(args.early_exit_layers, "--early-exit-layers")
    return args


def build_pool(model, args) -> dict:
    if args.pool_set == "default":
        from drafters.pool import default_pool
        return default_pool(model)
    from drafters import EarlyExitDrafter, NgramDrafter
    return {"ngram": NgramDrafter(), **{f"early_exit_{k}": EarlyExitDrafter(model, k) for k in args.early_exit_layers}}


def runs_of(args, names) -> list:
    from specsel.study import RunSpec
    arms = tuple(f"{d}@{g}" for d in names for g in args.gammas)
    spec = dict(kind="learner", setting="drafter", arms=arms)
    runs = [RunSpec("ucbspec/bandit", learner="ucbspec", **spec),
            RunSpec("ucbspec/full", learner="ucbspec", feedback_mode="full", **spec),
            RunSpec("hedgespec/full", learner="hedgespec", **spec)]
    if args.score_every > 1:
        runs += [RunSpec("round_robin/every_round", learner="round_robin", feedback_mode="full", score_every=1, **spec),
                 RunSpec("round_robin/deferred", learner="round_robin", feedback_mode="full",
                         score_every=args.score_every, **spec)]
    return runs


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from specsel import SpecEngine
    from specsel.modeling.target import load_target
    from specsel.study import load_items
    from specsel.study.ab import report_ab, run_ab
    from specsel.study.decoding import EngineDecoder
    from specsel.study.policies import PolicyFactory

    class Timing(EngineDecoder):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.timers = {}

        def policy(self, spec, bsz):
            self.timers[spec.name] = TimedPolicy(super().policy(spec, bsz))
            return self.timers[spec.name]

    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_target(args.target)
    pool = build_pool(model, args)
    items = load_items(tokenizer, args.domain_names, args.data_dir, args.limit, seed=0)
    runs = runs_of(args, list(pool))
    decoder = Timing(SpecEngine(model, pool, eos_token_id=tokenizer.eos_token_id), PolicyFactory(list(pool)),
                     args.max_new_tokens)
    pairs = {"full_over_bandit": ("ucbspec/full", "ucbspec/bandit")}
    if args.score_every > 1:
        pairs["deferred_over_every_round"] = ("round_robin/deferred", "round_robin/every_round")
    result = run_ab(items, args.out, decoder, runs, args.bsz, args.repeats, pairs, not args.no_progress)
    result.update(learner_costs(result, decoder.timers, args.out, args.bsz))
    for key in ("full_info_overhead", "deferred_scoring_saving", "learner_update_frac", "hedgespec_update_frac"):
        if result.get(key) is not None:
            print(f"{key:<28} {result[key]:.4f}")
    return report_ab(result, "bench_learners", "tokens/s", args.out, args.json)


def learner_costs(result: dict, timers: dict, out, bsz: int) -> dict:
    """The overheads from the pairs' medians, and the learners' select+update time per round over the
    mean target forward (verify seconds of the bandit run). Learner times are those of this process's
    decodes (none when everything was resumed from the store)."""
    from pathlib import Path

    from evaluators.lines import complete_lines
    from evaluators.records import read_records
    lines = [l for l in complete_lines(read_records(Path(out) / "queries.jsonl")) if l["bsz"] == bsz]
    verify = {(l["run"], l["batch"], r["round"]): r["verify_s"] for l in lines if l["run"] == "ucbspec/bandit"
              for r in l["records"]}
    forward = sum(verify.values()) / len(verify) if verify else None
    pairs = result["pairs"]
    out = {"full_info_overhead": 1 / pairs["full_over_bandit"]["median"] - 1 if pairs["full_over_bandit"] else None,
           "mean_target_forward_s": forward}
    if "deferred_over_every_round" in pairs and pairs["deferred_over_every_round"]:
        out["deferred_scoring_saving"] = 1 - 1 / pairs["deferred_over_every_round"]["median"]
    for run, key in (("ucbspec/bandit", "learner_update_frac"), ("hedgespec/full", "hedgespec_update_frac")):
        t = timers.get(run)
        out[key] = t.learner_s / t.rounds / forward if t is not None and t.rounds and forward else None
    return out


if __name__ == "__main__":
    sys.exit(run_command(main, "bench_learners"))
