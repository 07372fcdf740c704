"""KV cache benchmark: appending in place (GrowingLayer) against transformers' DynamicCache, side by side.

    python recipes/bench_cache.py --data-dir ../shared/data --repeats 3 --threads 2

transformers' DynamicLayer concatenates each forward's keys and values to the whole cache, so a
forward copies every cached token of every layer; specsel's RaggedKVCache appends into buffers
with spare room instead (specsel/modeling/growing.py). This decodes the same batches both ways
(`specsel.modeling.kvcache.APPEND_IN_PLACE` on and off), greedy, with every --arms arm, the two
modes alternating within each batch and repeat, and prints tokens/s in place / concatenating
per arm: the median over the repeats and its spread. Default prompts: the general stream's
(AlpacaEval instructions and CNN/DailyMail articles of 400-1,700 tokens, queries 0-3 of each),
where long caches make the copy costly. Every output must equal the first mode's (exit 1 if not).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

import specsel.modeling.kvcache as kvcache
from evaluators.timing import spread
from specsel import Arm, SpecEngine
from specsel.data import DOMAIN_SPEC_HELP, domains_argument
from specsel.modeling.target import EMBEDDED_DEFAULT, load_target
from specsel.study import load_items, load_pool, parse_csv

MODES = {"in_place": True, "concatenate": False}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", default=EMBEDDED_DEFAULT)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--domains", default="alpaca,summarization", help=DOMAIN_SPEC_HELP)
    ap.add_argument("--skip", type=int, default=0, help="first eval queries of each domain to leave out")
    ap.add_argument("--limit", type=int, default=4, help="queries per domain")
    ap.add_argument("--bsz", type=int, default=4)
    ap.add_argument("--arms", default="autoregressive,eagle@2", help="comma list of arms of the default pool")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (fit them to the free cores)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    try:
        args.arms = [Arm.parse(a) for a in parse_csv(args.arms)]
    except ValueError as e:
        ap.error(f"--arms: {e}")
    if args.repeats < 1 or args.bsz < 1 or args.limit < 1:
        ap.error("--repeats, --bsz and --limit must be >= 1")
    args.domain_names = domains_argument(ap, args.domains)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    target, tokenizer = load_target(args.target)
    pool = load_pool(target, sorted({a.drafter for a in args.arms if a.drafter}) or ["ngram"])
    engine = SpecEngine(target, pool, eos_token_id=tokenizer.eos_token_id)
    items = load_items(tokenizer, args.domain_names, args.data_dir, args.limit, seed=0, skip=args.skip)
    batches = [[it.prompt for it in items[i:i + args.bsz]] for i in range(0, len(items), args.bsz)]
    engine.generate([batches[0][0][-16:]], args.arms[-1], max_new_tokens=4)        # warm-up
    seconds = {(k, str(a), m): 0.0 for k in range(args.repeats) for a in args.arms for m in MODES}
    tokens = dict.fromkeys(seconds, 0)
    reference: dict = {}
    lossless = True
    try:
        for k in range(args.repeats):
            for b, prompts in enumerate(batches):
                for arm in args.arms:
                    modes = list(MODES) if (b + k) % 2 == 0 else list(MODES)[::-1]
                    for mode in modes:
                        kvcache.APPEND_IN_PLACE = MODES[mode]
                        out = engine.generate(prompts, arm, max_new_tokens=args.max_new_tokens)
                        seconds[k, str(arm), mode] += out.wall_s
                        tokens[k, str(arm), mode] += out.new_tokens
                        lossless &= reference.setdefault((b, str(arm)), out.tokens) == out.tokens
            print(f"repeat {k + 1}: " + ", ".join(
                f"{a} {seconds[k, str(a), 'concatenate'] / seconds[k, str(a), 'in_place']:.3f}x" for a in args.arms))
    finally:
        kvcache.APPEND_IN_PLACE = True
    result = {"queries": len(items), "bsz": args.bsz, "domains": args.domains, "skip": args.skip,
              "repeats": args.repeats, "lossless": lossless, "speedup": {}}
    for arm in map(str, args.arms):
        # same tokens both ways, so the tokens/s ratio is the inverse ratio of the seconds
        ratios = [seconds[k, arm, "concatenate"] / seconds[k, arm, "in_place"] for k in range(args.repeats)]
        rates = [tokens[k, arm, "in_place"] / seconds[k, arm, "in_place"] for k in range(args.repeats)]
        result["speedup"][arm] = {**spread(ratios), "in_place_tokens_per_s": statistics.median(rates)}
        s = result["speedup"][arm]
        print(f"{arm}: tokens/s in place / concatenating {s['median']:.3f}x (min {s['min']:.3f}, max {s['max']:.3f})")
    print(f"lossless: {lossless}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0 if lossless else 1


if __name__ == "__main__":
    sys.exit(main())
