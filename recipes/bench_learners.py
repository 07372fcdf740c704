"""Learner benchmark: the cost of full-information feedback and of the learners themselves.

    python recipes/bench_learners.py --json results/bench_learners.json

On the embedded target with a pool of 4 drafters (n-gram and early exits of the target at
three depths), the same prompts are decoded twice, greedy, with the same learner (UCBSpec):
    feedback="bandit"   only the played drafter runs
    feedback="full"     every drafter catches up each round and scores every committed position
UCBSpec only uses the played arm's realised length, so both runs play the same arms and
produce the same tokens: the wall-time difference is the price of full information. Each
batch runs every mode twice in mirrored order (A B C C B A), so a linear drift of the machine's
speed cancels out of the summed wall times.
    full_info_overhead   = wall(full) / wall(bandit) - 1                      (target <= 0.10)
    learner_update_frac  = learner select+update time per round / mean target forward time
                                                                             (target < 0.01)
HedgeSpec's update cost (one NormalHedge step per committed position) is timed in the full run too.

`--pool default` uses the shipped pool instead (n-gram, the EAGLE head and its three LoRA
experts). `--score-every K` (K > 1) adds two round-robin runs with full information, scoring
every round vs. K rounds at a time (generate(score_every=K)); round robin ignores feedback, so
both play the same arms:
    deferred_scoring_saving = 1 - wall(full, K rounds at a time) / wall(full, every round)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from drafters import EarlyExitDrafter, NgramDrafter
from specsel import SpecEngine, arm_grid
from specsel.data import DOMAIN_SPEC_HELP, domains_argument, encode_prompts, load_domain
from specsel.learners.policy import LearnerPolicy
from specsel.modeling.target import EMBEDDED_DEFAULT, load_target


class TimedPolicy(LearnerPolicy):
    """LearnerPolicy that accounts the time spent in select, timed and observe."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.learner_s, self.rounds = 0.0, 0

    def select(self, rows):
        t0 = time.perf_counter()
        out = super().select(rows)
        self.learner_s += time.perf_counter() - t0
        self.rounds += 1
        return out

    def observe(self, info):
        t0 = time.perf_counter()
        super().observe(info)
        self.learner_s += time.perf_counter() - t0

    def timed(self, info):
        t0 = time.perf_counter()
        super().timed(info)
        self.learner_s += time.perf_counter() - t0


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", default=EMBEDDED_DEFAULT)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--domain", default="humaneval", help="one domain: " + DOMAIN_SPEC_HELP)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--bsz", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--early-exit-layers", default="4,8,12", help="depths of the early-exit drafters")
    ap.add_argument("--gammas", default="2,4")
    ap.add_argument("--pool", default="early_exit", choices=("early_exit", "default"),
                    help="early_exit: n-gram + early exits; default: the shipped pool (n-gram, EAGLE, LoRA experts)")
    ap.add_argument("--score-every", type=int, default=1, help="K > 1: also measure deferred scoring (see above)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (fit them to the free cores)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    args.domain = domains_argument(ap, args.domain, "--domain", one=True)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    model, tokenizer = load_target(args.target)
    prompts = encode_prompts(tokenizer, load_domain(args.domain, args.data_dir, limit=args.prompts))
    if args.pool == "default":
        from drafters.pool import default_pool
        pool = default_pool(model)
    else:
        pool = {"ngram": NgramDrafter()}
        for k in (int(x) for x in args.early_exit_layers.split(",")):
            pool[f"early_exit_{k}"] = EarlyExitDrafter(model, k)
    names = list(pool)
    arms = arm_grid(names, [int(g) for g in args.gammas.split(",")])
    engine = SpecEngine(model, pool, eos_token_id=tokenizer.eos_token_id)
    engine.generate([prompts[0][:16]], arms[0], max_new_tokens=4)          # warm-up

    policies = {"bandit": TimedPolicy("ucbspec", arms, names), "full": TimedPolicy("ucbspec", arms, names),
                "hedge": TimedPolicy("hedgespec", arms, names)}
    feedback = {"bandit": "bandit", "full": "full", "hedge": "full"}
    score_every = {m: 1 for m in policies}
    if args.score_every > 1:
        policies |= {"rr_full": TimedPolicy("round_robin", arms, names),
                     "rr_deferred": TimedPolicy("round_robin", arms, names)}
        feedback |= {"rr_full": "full", "rr_deferred": "full"}
        score_every |= {"rr_full": 1, "rr_deferred": args.score_every}
    wall = {m: 0.0 for m in policies}
    tokens = {m: [] for m in policies}
    verify = {}
    for b, i in enumerate(range(0, len(prompts), args.bsz)):
        # ABBA per batch: every mode runs twice, mirrored, so a linear drift of the machine cancels
        order = list(policies) + list(policies)[::-1]
        for rep, m in enumerate(order):
            t0 = time.perf_counter()
            out = engine.generate(prompts[i:i + args.bsz], policies[m], max_new_tokens=args.max_new_tokens,
                                  feedback=feedback[m], progress=True, score_every=score_every[m])
            wall[m] += time.perf_counter() - t0
            if rep < len(policies):
                tokens[m] += out.tokens
            if m == "bandit":
                verify.update({(b, r.round, r.verify_s): r.verify_s for r in out.records})
    verify_mean = sum(verify.values()) / len(verify)
    bandit_s, full_s, hedge_s = wall["bandit"], wall["full"], wall["hedge"]
    bandit_policy, full_policy, hedge_policy = policies["bandit"], policies["full"], policies["hedge"]
    result = {
        "target": args.target, "drafters": names, "arms": [str(a) for a in arms], "prompts": len(prompts),
        "bsz": args.bsz, "max_new_tokens": args.max_new_tokens,
        "same_tokens": tokens["bandit"] == tokens["full"],
        "bandit_wall_s": bandit_s, "full_wall_s": full_s,
        "full_info_overhead": full_s / bandit_s - 1,
        "mean_target_forward_s": verify_mean,
        "learner_update_frac": bandit_policy.learner_s / bandit_policy.rounds / verify_mean,
        "learner_update_frac_full": full_policy.learner_s / full_policy.rounds / verify_mean,
        "hedgespec_update_frac": hedge_policy.learner_s / hedge_policy.rounds / verify_mean,
        "hedgespec_wall_s": hedge_s,
    }
    if args.score_every > 1:
        result |= {"score_every": args.score_every, "rr_full_wall_s": wall["rr_full"],
                   "rr_deferred_wall_s": wall["rr_deferred"],
                   "deferred_scoring_saving": 1 - wall["rr_deferred"] / wall["rr_full"],
                   "deferred_same_tokens": tokens["rr_full"] == tokens["rr_deferred"] == tokens["bandit"]}
    for key, value in result.items():
        print(f"{key:<28} {value}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0 if result["same_tokens"] else 1


if __name__ == "__main__":
    sys.exit(main())
