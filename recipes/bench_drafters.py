"""Drafter benchmark: MAT, tokens/s, speedup and step costs of every (drafter, gamma) arm per domain.

    python recipes/bench_drafters.py --data-dir ../shared/data --skip 50 --json results/bench_drafters.json

On the embedded target, greedy, batch 1: for each domain's held-out prompts (--skip 50: the benchmark
prompts no study or tuning recipe uses), plain decoding and every arm (pool x --gammas) decode the same
prompt one after the other, as runs of the one executor (rotated per prompt, --repeats interleaved).
Per arm and domain:
    mat          committed tokens per target forward (bonus included)
    tokens_per_s generated tokens / wall seconds (prefill included, as for the baseline)
    speedup      the median (min-max) over prompts of tokens/s over plain decoding's on the same prompt,
                 UNRELIABLE when the machine was disturbed (evaluators.reliability)
    draft_ms     the drafter's proposal time per drafted token (its rounds' draft_s / drafted)
    verify_ms    mean target forward + verification per round (rounds after the first, whose forward
                 follows the prefill); verify_x = verify_ms / plain decoding's: the cost of verifying a
                 window of gamma + 1 tokens, in plain forwards
Every output is compared with plain decoding's (greedy is lossless). Lines go to OUT/<domain>/queries.jsonl;
rerunning the same command resumes.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from specsel.flags import add_flags, flag_parser, parse_flags, run_command

AR = "autoregressive"


def parse_args(argv=None):
    ap = flag_parser("bench_drafters", __doc__)
    add_flags(ap, "target", "data_dir", "domains", "prompts", "skip", "drafters", "gammas", "max_new_tokens",
              "repeats", "threads", "out", "json", "no_progress", prompts=20, gammas="2,4",
              out="results/bench_drafters")
    args = parse_flags(ap, argv)
    from specsel.data import domains_argument
    from specsel.options import parse_ints
    args.domain_names = domains_argument(ap, args.domains)
    args.gammas = parse_ints(args.gammas, "--gammas")
    return args


def arm_row(lines: list[dict], run: str, ar: dict) -> dict:
    """The step costs of one arm on one domain, from its lines (its first repeat)."""
    mine = [l for l in lines if l["run"] == run]
    recs = [r for l in mine for r in l["records"]]
    later = [r for r in recs if r["round"] > 0]
    drafted = sum(r["drafted"] for r in recs)
    verify_ms = 1000 * sum(r["verify_s"] for r in later) / max(len(later), 1)
    return {"mat": round(sum(r["committed"] for r in recs) / max(len(recs), 1), 3),
            "draft_ms": round(1000 * sum(r["draft_s"] for r in recs if r["drafted"]) / max(drafted, 1), 2),
            "verify_ms": round(verify_ms, 2), "verify_x": round(verify_ms / max(ar.get("verify_ms", 0), 1e-9), 3)
            if ar else 1.0, "prompts": len(mine)}


def report(domain: str, lines: list[dict], arms: list[str], repeats: int) -> list[dict]:
    from evaluators.bench import bench_rows
    rows, _ = bench_rows(lines, [AR, *arms], 1, repeats)
    ar = arm_row(lines, AR, {})
    out = []
    for r in rows:
        costs = arm_row(lines, r["run"], ar)
        drafter, _, gamma = r["run"].removeprefix("fixed/").partition("@")
        v = r["over_baseline"] or {}
        out.append({"domain": domain, "drafter": drafter, "gamma": int(gamma or 0), **costs,
                    "tokens_per_s": round(r["tokens_per_s"] or 0.0, 2), "speedup": v.get("median"),
                    "speedup_min": v.get("min"), "speedup_max": v.get("max"), "unreliable": v.get("unreliable")})
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from drafters.pool import default_pool
    from specsel import SpecEngine
    from specsel.modeling.target import load_target
    from specsel.study import Executor, Phase, ResultStore, RunSpec, load_items
    from specsel.study.decoding import EngineDecoder
    from specsel.study.policies import PolicyFactory
    if args.threads:
        torch.set_num_threads(args.threads)
    target, tokenizer = load_target(args.target)
    pool = default_pool(target, [d for d in args.drafters.split(",") if d] if args.drafters else None)
    arms = [f"{d}@{g}" for d in pool for g in args.gammas]
    runs = (RunSpec(AR, "autoregressive", arm=AR), *(RunSpec(f"fixed/{a}", "fixed", arm=a) for a in arms))
    decoder = EngineDecoder(SpecEngine(target, pool, eos_token_id=tokenizer.eos_token_id), PolicyFactory(list(pool)),
                            args.max_new_tokens, warm_gamma=max(args.gammas))
    results, lossless = [], True
    for domain in args.domain_names:
        items = load_items(tokenizer, [domain], args.data_dir, args.prompts, skip=args.skip)
        store = ResultStore(Path(args.out) / domain.split("=")[0] / "queries.jsonl", resume=True)
        Executor(items, store, decoder, progress=not args.no_progress).execute(
            Phase(1, runs, args.repeats, f"bench drafters: {domain}"))
        reference = {l["qid"]: l["tokens"] for l in store.lines if l["run"] == AR}
        lossless &= all(l["tokens"] == reference[l["qid"]] for l in store.lines)
        results += report(domain, store.lines, [f"fixed/{a}" for a in arms], args.repeats)
    return write(results, lossless, args)


def write(results: list[dict], lossless: bool, args) -> int:
    import time
    print(f"\n{'domain':<10}{'drafter':<15}{'gamma':>6}{'MAT':>7}{'tok/s':>8}{'speedup (min-max)':>24}{'draft ms':>10}"
          f"{'verify ms':>11}{'verify x':>10}")
    for r in results:
        speed = "-" if r["speedup"] is None else f"{r['speedup']:.2f} ({r['speedup_min']:.2f}-{r['speedup_max']:.2f})"
        print(f"{r['domain']:<10}{r['drafter']:<15}{r['gamma']:>6}{r['mat']:>7.2f}{r['tokens_per_s']:>8.1f}"
              f"{speed:>24}{r['draft_ms']:>10.2f}{r['verify_ms']:>11.2f}{r['verify_x']:>10.2f}"
              + ("  UNRELIABLE" if r["unreliable"] else ""))
    print(f"lossless {lossless}")
    summary = {"kind": "bench_drafters", "command": "python recipes/bench_drafters.py " + " ".join(sys.argv[1:]),
               "created": time.strftime("%Y-%m-%d %H:%M:%S"), "lossless": lossless, "arms": results,
               "skip": args.skip, "prompts": args.prompts, "max_new_tokens": args.max_new_tokens}
    for path in [Path(args.out) / "summary.json", *([Path(args.json)] if args.json else [])]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary, indent=1) + "\n")
    return 0 if lossless else 1


if __name__ == "__main__":
    sys.exit(run_command(main, "bench_drafters"))
