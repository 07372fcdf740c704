"""EAGLE family benchmark: a head's LoRA experts drafting in one forward, against separate heads.

    python recipes/bench_family.py --data-dir ../shared/data --repeats 3 --threads 2

The default pool's EAGLE head and its three LoRA experts form one family
(drafters/eagle_family.py): one head cache, each row's slot run with its own adapter, so rows
playing different experts draft in one head forward per step, and the experts are scored in
one feed. This decodes the same batches with that pool and with the experts on separate head
copies (`default_pool(one_family=False)`), greedy, the two pools alternating within each batch
and repeat, and prints tokens/s family / separate per run: the median over the repeats and its
spread. Runs: `experts` (row i plays the i-th of eagle and the experts, at --gamma, bandit
feedback) and `hedgespec` (the joint FactoredHedge with full information, each pool's draft calls
in its batch cost). Default prompts: the mixed stream's tuning queries (MATH, HumanEval, MedQA
queries 31-34 of each). Every output must equal the autoregressive decode (exit 1 if not).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

from drafters.pool import default_pool
from evaluators.timing import spread
from specsel import Arm, SpecEngine
from specsel.core.drafting import draft_calls
from specsel.data import DOMAIN_SPEC_HELP, domains_argument
from specsel.learners.factored import FactoredHedge
from specsel.modeling.target import EMBEDDED_DEFAULT, load_target
from specsel.study import load_items, parse_csv

POOLS = ("family", "separate")
RUNS = ("experts", "hedgespec")
MEMBERS = ("eagle", "lora_math", "lora_code", "lora_medical")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", default=EMBEDDED_DEFAULT)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--domains", default="math,humaneval,medqa", help=DOMAIN_SPEC_HELP)
    ap.add_argument("--skip", type=int, default=31, help="first eval queries of each domain to leave out "
                    "(31: the tuning queries 31-34; the study uses 0-29, held-out benchmarks 50+)")
    ap.add_argument("--limit", type=int, default=4, help="queries per domain")
    ap.add_argument("--bsz", type=int, default=4)
    ap.add_argument("--gamma", type=int, default=2, help="the experts run's speculation length")
    ap.add_argument("--gammas", default="1,2,4", help="the hedgespec run's speculation lengths")
    ap.add_argument("--runs", default=",".join(RUNS), help=f"comma list of {', '.join(RUNS)}")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--score-every", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (fit them to the free cores)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    args.runs = parse_csv(args.runs)
    if not args.runs or any(r not in RUNS for r in args.runs):
        ap.error(f"--runs takes {', '.join(RUNS)} (got {','.join(args.runs) or 'nothing'})")
    try:
        args.gammas = [int(g) for g in parse_csv(args.gammas)]
    except ValueError:
        ap.error(f"--gammas must be integers, e.g. 1,2,4 (got {args.gammas})")
    if args.repeats < 1 or args.bsz < 1 or args.limit < 1 or args.gamma < 1 or any(g < 1 for g in args.gammas):
        ap.error("--repeats, --bsz, --limit, --gamma and --gammas must be >= 1")
    args.domain_names = domains_argument(ap, args.domains)
    return args


def policy_for(run: str, args, engine: SpecEngine, rows: int):
    if run == "experts":
        return [Arm(MEMBERS[i % len(MEMBERS)], args.gamma) for i in range(rows)]
    return FactoredHedge(list(engine.drafters), args.gammas, seed=0, draft_calls=draft_calls(engine.drafters))


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    target, tokenizer = load_target(args.target)
    engines = {p: SpecEngine(target, default_pool(target, one_family=p == "family"),
                             eos_token_id=tokenizer.eos_token_id) for p in POOLS}
    items = load_items(tokenizer, args.domain_names, args.data_dir, args.limit, seed=0, skip=args.skip)
    batches = [[it.prompt for it in items[i:i + args.bsz]] for i in range(0, len(items), args.bsz)]
    for engine in engines.values():                                                 # warm-up
        engine.generate([batches[0][0][-16:]] * len(MEMBERS), [Arm(m, 2) for m in MEMBERS], max_new_tokens=4)
    reference = [engines["family"].generate(b, Arm.autoregressive(), max_new_tokens=args.max_new_tokens).tokens
                 for b in batches]
    seconds = {(k, r, p): 0.0 for k in range(args.repeats) for r in args.runs for p in POOLS}
    tokens = dict.fromkeys(seconds, 0)
    lossless = True
    for k in range(args.repeats):
        policies = {(r, p): policy_for(r, args, engines[p], args.bsz) for r in args.runs for p in POOLS}
        for b, prompts in enumerate(batches):
            for run in args.runs:
                for pool in POOLS if (b + k) % 2 == 0 else POOLS[::-1]:
                    policy = policies[run, pool]
                    learner = isinstance(policy, FactoredHedge)
                    if learner:
                        policy.seek(b * args.bsz)
                    out = engines[pool].generate(prompts, policy if learner else policy[: len(prompts)],
                                                 max_new_tokens=args.max_new_tokens,
                                                 score_every=args.score_every if learner else 1,
                                                 feedback="full" if learner else "bandit")
                    seconds[k, run, pool] += out.wall_s
                    tokens[k, run, pool] += out.new_tokens
                    lossless &= out.tokens == reference[b]
        print(f"repeat {k + 1}: " + ", ".join(f"{r} {ratio(tokens, seconds, k, r):.3f}x" for r in args.runs))
    result = {"queries": len(items), "bsz": args.bsz, "domains": args.domains, "skip": args.skip,
              "repeats": args.repeats, "lossless": lossless, "speedup": {}}
    for run in args.runs:
        ratios = [ratio(tokens, seconds, k, run) for k in range(args.repeats)]
        rates = [tokens[k, run, "family"] / seconds[k, run, "family"] for k in range(args.repeats)]
        result["speedup"][run] = {**spread(ratios), "family_tokens_per_s": statistics.median(rates)}
        s = result["speedup"][run]
        print(f"{run}: tokens/s family / separate {s['median']:.3f}x (min {s['min']:.3f}, max {s['max']:.3f})")
    print(f"lossless: {lossless}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0 if lossless else 1


def ratio(tokens: dict, seconds: dict, k: int, run: str) -> float:
    """Tokens/s with the family over tokens/s with separate heads, in repeat k."""
    return (tokens[k, run, "family"] / seconds[k, run, "family"]) / (tokens[k, run, "separate"] /
                                                                      seconds[k, run, "separate"])


if __name__ == "__main__":
    sys.exit(main())
