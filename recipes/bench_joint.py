"""Joint-setting benchmark: HedgeSpec variants against fixed arms, tokens/s side by side.

    python recipes/bench_joint.py --data-dir ../shared/data --skip 30 --limit 20 --out results/bench_joint

Queries [skip, skip+limit) of each domain are used. The study takes the first 30, so the
default skip keeps this benchmark off them. They are mixed and batched as in the study (greedy,
--bsz, --max-new-tokens). Every batch is decoded by each arm in --fixed and by each HedgeSpec
variant of the joint setting (pool x --gammas, throughput objective), in an order rotated per
batch so that machine drift spreads evenly:

    per_query     the study's HedgeSpec: one learner per query, lazy scoring (specsel.learners.policy)
    weighted      per_query scoring every drafter a row's learner weighs, not just its favourite
    full_scoring  per_query with lazy scoring off: every drafter scored every window
    shared        one learner for all rows of a batch, kept over the whole stream

and, with --dynamic-gamma DRAFTER[,DRAFTER...], Hugging Face's dynamic draft length on each
named drafter (specsel.learners.dynamic_gamma, start --dynamic-start, run `dynamic_gamma/DRAFTER`).

Every run is repeated --repeats times (default 3), the repeats interleaved batch by batch, each
with its own learners. Printed per run, as medians over the repeats: tokens/s (prefill
included), decode tokens/s, MAT, and tokens/s over the best fixed arm's (highest median tokens/s)
within each repeat, with its min and max. Every output must equal the first fixed arm's output
(greedy is lossless). Finished batches are appended to OUT/repeatK/batches.jsonl. Rerunning the
same command resumes: the learners' cost models are re-fed the stored rounds, and the shared
learner restarts.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from evaluators.lines import complete_lines
from evaluators.records import to_dict
from specsel.study import ResultStore, load_items, load_pool, warm_cost_model

VARIANTS = {"per_query": {}, "weighted": {"lazy_drafters": None}, "full_scoring": {"lazy_scoring": False},
            "shared": {"shared": True}}


def parse_args(argv=None):
    from specsel.modeling.target import EMBEDDED_DEFAULT
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", default=EMBEDDED_DEFAULT)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--domains", default="math,humaneval,medqa")
    ap.add_argument("--skip", type=int, default=30, help="queries of each domain to skip (the study's)")
    ap.add_argument("--limit", type=int, default=20, help="queries per domain")
    ap.add_argument("--drafters", default=None, help="comma list of pool drafters (default: the whole pool)")
    ap.add_argument("--fixed", default="autoregressive,ngram@1,ngram@2", help="fixed arms, e.g. ngram@2,eagle@4")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    ap.add_argument("--dynamic-gamma", default="", help="comma list of drafters to run with Hugging Face's "
                    "dynamic draft length (dynamic_gamma)")
    ap.add_argument("--dynamic-start", type=int, default=None, help="dynamic_gamma's first length "
                    "(default: transformers' 20)")
    ap.add_argument("--gammas", default="1,2,4", help="speculation lengths of the joint arms")
    ap.add_argument("--bsz", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats of every run; ratios are reported "
                    "as the median over repeats with their min and max (this machine drifts by about 15%%)")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--score-every", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default="results/bench_joint")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error(f"--repeats must be >= 1 (got {args.repeats})")
    bad = [v for v in args.variants.split(",") if v not in VARIANTS]
    if bad:
        ap.error(f"unknown variant(s) {', '.join(bad)}; choose from {', '.join(VARIANTS)}")
    return args


def totals(lines: list[dict]) -> dict:
    """Per run: tokens, wall and decode seconds, rounds."""
    out: dict[str, dict] = {}
    for line in lines:
        t = out.setdefault(line["run"], {"tokens": 0, "wall": 0.0, "decode": 0.0, "rounds": 0})
        if line["row"] == 0:
            t["wall"] += line["batch_wall_s"]
            t["decode"] += line["batch_wall_s"] - line["batch_prefill_s"]
        t["tokens"] += len(line["tokens"])
        t["rounds"] += len(line["records"])
    return out


def make_policies(runs: list[str], args, arms, drafters, store) -> dict:
    """The adaptive runs' policies for one repeat; HedgeSpec's cost model is re-fed that
    repeat's stored rounds, so a resumed benchmark continues where it stopped."""
    from specsel.learners.dynamic_gamma import DynamicGamma
    from specsel.learners.policy import LearnerPolicy
    policies = {}
    for run in runs:
        kind, _, name = run.partition("/")
        if kind == "dynamic_gamma":
            policies[run] = DynamicGamma(name, **({} if args.dynamic_start is None else {"start": args.dynamic_start}))
        elif kind == "hedgespec":
            policies[run] = LearnerPolicy("hedgespec", arms, drafters, objective="throughput", seed=args.seed,
                                          **VARIANTS[name])
            warm_cost_model(policies[run], [l for l in store.lines if l["run"] == run])
    return policies


def summarize(runs: list[str], fixed: list[str], per_repeat: list[dict]) -> tuple[str, list[dict]]:
    """The best fixed arm (highest median tokens/s) and one row per run: median tokens/s,
    decode tokens/s and MAT over the repeats, and the ratio to the best fixed arm within each
    repeat (median, min, max)."""
    def median(values):
        return statistics.median(values)

    def tps(t, run):
        return t[run]["tokens"] / t[run]["wall"]
    best = max(fixed, key=lambda r: median([tps(t, r) for t in per_repeat]))
    rows = []
    for run in runs:
        ratios = [tps(t, run) / tps(t, best) for t in per_repeat]
        rows.append({"run": run, "tokens_per_s": median([tps(t, run) for t in per_repeat]),
                     "decode_tokens_per_s": median([t[run]["tokens"] / t[run]["decode"] for t in per_repeat]),
                     "mat": median([t[run]["tokens"] / t[run]["rounds"] for t in per_repeat]),
                     "over_best_fixed": median(ratios), "over_best_fixed_min": min(ratios),
                     "over_best_fixed_max": max(ratios), "repeats": len(per_repeat)})
    return best, rows


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    from tqdm.auto import tqdm

    from specsel import Arm, SpecEngine
    from specsel.learners.policy import LearnerPolicy
    from specsel.modeling.target import load_target
    if args.threads:
        torch.set_num_threads(args.threads)
    fixed = [f for f in args.fixed.split(",") if f]
    if not fixed:
        raise SystemExit("bench_joint: --fixed needs at least one arm (the lossless reference)")
    target, tokenizer = load_target(args.target)
    items = load_items(tokenizer, args.domains.split(","), args.data_dir, args.limit, args.seed, skip=args.skip)
    pool = load_pool(target, [d for d in args.drafters.split(",") if d] if args.drafters else None)
    drafters = list(pool)
    arms = [Arm(d, g) for d in drafters for g in sorted({int(g) for g in args.gammas.split(",")}, reverse=True)]
    fixed_arms = {}
    for name in fixed:
        arm = Arm.parse(name)
        if arm.drafter is not None and arm.drafter not in pool:
            raise SystemExit(f"bench_joint: --fixed {name}: no drafter '{arm.drafter}' in the pool ({', '.join(pool)})")
        fixed_arms[name] = arm
    dynamic = [d for d in args.dynamic_gamma.split(",") if d]
    unknown = [d for d in dynamic if d not in pool]
    if unknown:
        raise SystemExit(f"bench_joint: --dynamic-gamma {','.join(unknown)}: not in the pool ({', '.join(pool)})")
    runs = fixed + [f"hedgespec/{v}" for v in args.variants.split(",")] + [f"dynamic_gamma/{d}" for d in dynamic]
    out = Path(args.out)
    stores = [ResultStore(out / f"repeat{k + 1}" / "batches.jsonl", resume=True) for k in range(args.repeats)]
    policies = [make_policies(runs[len(fixed):], args, arms, drafters, store) for store in stores]
    engine = SpecEngine(target, pool, eos_token_id=tokenizer.eos_token_id)
    engine.generate([items[0].prompt[-16:]], Arm(drafters[0], 4), max_new_tokens=4)    # warm up
    batches = [list(range(i, min(i + args.bsz, len(items)))) for i in range(0, len(items), args.bsz)]
    bar = tqdm(total=len(batches) * len(runs) * args.repeats, desc="bench_joint", unit="run",
               disable=args.no_progress)
    for b, batch in enumerate(batches):
        for k, store in enumerate(stores):      # repeats interleaved batch by batch, each its own order
            turn = (b + k) % len(runs)
            for run in runs[turn:] + runs[:turn]:
                bar.update(1)
                if (run, args.bsz, b) in store.done:
                    continue
                policy = policies[k].get(run, fixed_arms.get(run))
                learner = isinstance(policy, LearnerPolicy)
                if learner:
                    policy.seek(batch[0])
                res = engine.generate([items[i].prompt for i in batch], policy, max_new_tokens=args.max_new_tokens,
                                      feedback="full" if learner else "bandit", score_every=args.score_every)
                qids = [items[i].qid for i in batch]
                store.append([{"run": run, "bsz": args.bsz, "batch": b, "batch_qids": qids, "row": r,
                               "qid": items[i].qid, "tokens": res.tokens[r], "batch_wall_s": res.wall_s,
                               "batch_prefill_s": res.prefill_s,
                               "records": [to_dict(rec) for rec in res.records if rec.row == r]}
                              for r, i in enumerate(batch)])
    bar.close()
    # a batch cut by an interruption and rerun counts once
    per_repeat_lines = [complete_lines(store.lines) for store in stores]
    reference = {l["qid"]: l["tokens"] for l in per_repeat_lines[0] if l["run"] == fixed[0]}
    lossless = all(l["tokens"] == reference[l["qid"]] for lines in per_repeat_lines for l in lines)
    best, rows = summarize(runs, fixed, [totals(lines) for lines in per_repeat_lines])
    print(f"{len(items)} queries ({args.domains}, skip {args.skip}), bsz {args.bsz}, greedy, {args.repeats} "
          f"interleaved repeat(s), medians; lossless: {lossless}")
    print(f"{'run':24s} {'tok/s':>7s} {'decode tok/s':>13s} {'MAT':>6s} {'x best fixed':>13s} {'(min-max)':>13s}")
    for row in rows:
        print(f"{row['run']:24s} {row['tokens_per_s']:7.2f} {row['decode_tokens_per_s']:13.2f} {row['mat']:6.3f} "
              f"{row['over_best_fixed']:13.3f} {row['over_best_fixed_min']:6.3f}-{row['over_best_fixed_max']:.3f}")
    (out / "summary.json").write_text(json.dumps({"best_fixed": best, "lossless": lossless, "rows": rows,
                                                  "args": vars(args)}, indent=1) + "\n")
    print(f"best fixed: {best}; written {out}/summary.json")
    return 0 if lossless else 1

if __name__ == "__main__":
    sys.exit(main())
