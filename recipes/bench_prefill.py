"""Prefill benchmark: length-grouped prefill against one padded forward, side by side.

    python recipes/bench_prefill.py --data-dir ../shared/data --skip 30 --limit 20 --bsz 4 --repeats 3

The study's mixed stream (MATH, HumanEval, MedQA; eval queries skip..skip+limit-1 of each, which
the default study never uses) is cut into batches of --bsz prompts, as the study batches them.
Each batch's prompts are prefilled into a fresh RaggedKVCache twice, in alternating order: once
as one forward padded to the longest prompt (what the engine did before), once in length groups
(`RaggedKVCache.prefill`, what it does now). Both fill the same cache; the target features EAGLE
heads read are captured in both. Prints, per repeat, the total seconds of each and their ratio,
then the median ratio and its spread over the repeats; --json writes the same.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from specsel.data import DOMAIN_SPEC_HELP, domains_argument
from specsel.modeling.compat import decoder_stack
from specsel.modeling.kvcache import RaggedKVCache
from specsel.modeling.target import EMBEDDED_DEFAULT, load_target
from specsel.study import load_items


def prefill_seconds(target, prompts: list[list[int]], max_padding: float, capture) -> float:
    """Seconds to prefill every prompt but its last token (as the engine does)."""
    widths = torch.tensor([len(p) - 1 for p in prompts])
    tokens = torch.zeros(len(prompts), int(widths.max()), dtype=torch.long)
    for r, p in enumerate(prompts):
        tokens[r, : len(p) - 1] = torch.tensor(p[:-1])
    t0 = time.perf_counter()
    RaggedKVCache(target, len(prompts)).prefill(tokens, widths, capture=capture, max_padding=max_padding)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default=EMBEDDED_DEFAULT)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--domains", default="math,humaneval,medqa", help=DOMAIN_SPEC_HELP)
    ap.add_argument("--skip", type=int, default=30, help="first eval queries of each domain to leave out")
    ap.add_argument("--limit", type=int, default=20, help="queries per domain")
    ap.add_argument("--bsz", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-padding", type=float, default=0.25, help="grouped prefill's padding bound")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (fit them to the free cores)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    domains = domains_argument(ap, args.domains)
    torch.set_num_threads(args.threads)
    target, tokenizer = load_target(args.target)
    items = load_items(tokenizer, domains, args.data_dir, args.limit, seed=0, skip=args.skip)
    batches = [[it.prompt for it in items[i:i + args.bsz]] for i in range(0, len(items), args.bsz)]
    capture = (len(decoder_stack(target).layers),)         # the EAGLE-1 head's feature layer
    with torch.inference_mode():
        prefill_seconds(target, batches[0], args.max_padding, capture)          # warm-up
        repeats = []
        for k in range(args.repeats):
            total = {"padded": 0.0, "grouped": 0.0}
            for b, prompts in enumerate(batches):
                order = ("padded", "grouped") if (b + k) % 2 == 0 else ("grouped", "padded")
                for name in order:
                    total[name] += prefill_seconds(target, prompts, 1.0 if name == "padded" else args.max_padding,
                                                   capture)
            ratio = total["padded"] / total["grouped"]
            repeats.append({**total, "speedup": ratio})
            print(f"repeat {k + 1}: padded {total['padded']:.2f} s, grouped {total['grouped']:.2f} s, "
                  f"grouped is {ratio:.2f}x faster")
    ratios = [r["speedup"] for r in repeats]
    result = {"batches": len(batches), "bsz": args.bsz, "queries": len(items), "max_padding": args.max_padding,
              "repeats": repeats, "median_speedup": statistics.median(ratios),
              "spread": [min(ratios), max(ratios)]}
    print(f"prefill of {len(items)} prompts in {len(batches)} batches of {args.bsz}: grouped / padded speedup "
          f"median {result['median_speedup']:.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f}) "
          f"over {args.repeats} interleaved repeats")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
