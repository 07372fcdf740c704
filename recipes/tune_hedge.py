"""Choose HedgeSpec's regret discount on a tuning stream disjoint from the study's queries.

    python recipes/tune_hedge.py --data-dir ../shared/data --skip 30 --limit 20

Decodes eval queries [--skip, --skip + --limit) of every domain (the study evaluates the
first --limit, default 30, so the default tuning stream never overlaps it) once, greedy,
with full information (every drafter of the pool scores every committed position), then
replays HedgeSpec offline with every --discounts value (its default loss: each drafter's
acceptance per position) and plain NormalHedge (length loss, no discount), next to every
fixed drafter, the best fixed drafter over the stream and the per-query oracle. Greedy
records replay exactly (specsel.learners.replay), so one decoding pass serves every discount.
HedgeSpec is replayed with the study's feedback delay: --score-every k delivers its rounds k at a
time (specsel.learners.replay.simulate), as deferred scoring does live.
Records are appended per batch to --out/records.jsonl; a rerun resumes. Prints a table and writes --out/tune_hedge.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from tqdm.auto import tqdm

from evaluators.records import acceptance_matrix, to_dict
from evaluators.replay import rounds_fixed
from specsel import Arm, SpecEngine
from specsel.data import DOMAIN_SPEC_HELP, domains_argument, user_domain_records
from specsel.learners import HedgeSpec
from specsel.learners.replay import simulate
from specsel.modeling.target import EMBEDDED_DEFAULT, load_target
from specsel.study import ResultStore, load_items, load_pool, parse_csv, pool_weights

RUN = "tune/fullinfo"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", default=EMBEDDED_DEFAULT)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--domains", default="math,humaneval,medqa", help=DOMAIN_SPEC_HELP)
    ap.add_argument("--skip", type=int, default=30, help="eval queries skipped per domain (the study's --limit)")
    ap.add_argument("--limit", type=int, default=20, help="tuning queries per domain")
    ap.add_argument("--drafters", default=None, help="comma list of pool members (default: the default pool); "
                    "e.g. add lora_sql,lora_summarization for the nine-domain stream")
    ap.add_argument("--gamma", type=int, default=4)
    ap.add_argument("--discounts", default="1,0.95,0.9,0.8,0.7,0.5")
    ap.add_argument("--bsz", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--score-every", type=int, default=1,
                    help="the study's --score-every: HedgeSpec hears of its rounds this many at a time")
    ap.add_argument("--out", default="results/tune_hedge")
    args = ap.parse_args(argv)
    args.domain_names = domains_argument(ap, args.domains)
    return args


def decode(args, out: Path) -> tuple[list[dict], list[str]]:
    """Full-information records of every tuning query, one line per query in the study's
    queries.jsonl layout (specsel.study.ResultStore: fsynced batches, torn tail cut on resume)."""
    target, tokenizer = load_target(args.target)
    pool = load_pool(target, parse_csv(args.drafters) if args.drafters else None)
    items = load_items(tokenizer, args.domain_names, args.data_dir, args.limit, skip=args.skip)
    stamp = {"target": args.target, "weights": pool_weights(list(pool), None), "gamma": args.gamma,
             "max_new_tokens": args.max_new_tokens, "queries": [it.qid for it in items]}
    users = user_domain_records(args.domain_names)      # a changed NAME=PATH file is not mixed in
    stamp.update({"user_domains": users} if users else {})
    config = out / "config.json"
    if (out / "records.jsonl").exists() and config.exists() and json.loads(config.read_text()) != stamp:
        raise ValueError(f"{out} holds records of another target, pool, gamma, query set or user data file: "
                         "pass another --out")
    config.write_text(json.dumps(stamp))
    store = ResultStore(out / "records.jsonl", resume=True)
    engine = SpecEngine(target, pool, eos_token_id=tokenizer.eos_token_id)
    batches = [list(range(i, min(i + args.bsz, len(items)))) for i in range(0, len(items), args.bsz)]
    todo = [b for b in range(len(batches)) if (RUN, args.bsz, b) not in store.done]
    with tqdm(total=len(items), initial=len(items) - sum(len(batches[b]) for b in todo),
              desc="full-information pass", unit="query") as bar:
        for b in todo:
            batch = [items[i] for i in batches[b]]
            res = engine.generate([it.prompt for it in batch], Arm(next(iter(pool)), args.gamma),
                                  max_new_tokens=args.max_new_tokens, feedback="full", score_every=args.score_every)
            shared = {"run": RUN, "bsz": args.bsz, "batch": b, "batch_qids": [it.qid for it in batch]}
            store.append([{**shared, "qid": it.qid, "domain": it.domain,
                           "records": sorted((to_dict(r) for r in res.records if r.row == row),
                                             key=lambda r: r["round"])}
                          for row, it in enumerate(batch)])
            bar.update(len(batch))
    lines = {line["qid"]: line for line in store.run_lines(RUN, args.bsz)}
    return [lines[it.qid] for it in items], list(pool)


def table(lines: list[dict], drafters: list[str], gamma: int, discounts: list[float], score_every: int = 1) -> dict:
    """Rounds of every fixed drafter, the oracle and HedgeSpec per discount (hearing of its rounds
    `score_every` at a time) -> MAT per domain."""
    arms = [(j, gamma) for j in range(len(drafters))]
    rounds = defaultdict(lambda: defaultdict(int))       # policy -> domain -> rounds
    tokens = defaultdict(int)
    for line in lines:
        m = acceptance_matrix(line["records"], drafters)
        d = line["domain"]
        tokens[d] += m.shape[1]
        fixed = [rounds_fixed(m, a) for a in arms]
        for name, r in zip(drafters, fixed):
            rounds[name][d] += r
        rounds["oracle"][d] += min(fixed)
        plain = HedgeSpec(len(arms), reward_range=(1.0, gamma + 1.0), discount=1.0, loss="length")
        rounds["plain NormalHedge (length loss)"][d] += len(simulate(plain, m, arms, score_every=score_every))
        for disc in discounts:
            learner = HedgeSpec(len(arms), reward_range=(1.0, gamma + 1.0), discount=disc)
            rounds[f"hedgespec discount={disc:g}"][d] += len(simulate(learner, m, arms, score_every=score_every))
    total = sum(tokens.values())
    mat = {p: {**{d: tokens[d] / r[d] for d in tokens}, "mixed": total / sum(r.values())} for p, r in rounds.items()}
    best = max(drafters, key=lambda name: mat[name]["mixed"])
    return {"mat": mat, "best_fixed": best, "tokens": dict(tokens), "queries": len(lines)}


def main(argv=None) -> int:
    args = parse_args(argv)
    discounts = [float(x) for x in parse_csv(args.discounts)]
    if any(not 0 < d <= 1 for d in discounts):
        raise ValueError(f"--discounts {args.discounts}: every discount must lie in (0, 1]")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines, drafters = decode(args, out)
    result = table(lines, drafters, args.gamma, discounts, args.score_every)
    mat, best = result["mat"], result["best_fixed"]
    domains = list(result["tokens"]) + ["mixed"]
    print(f"{'policy':32s}" + "".join(f"{d:>11s}" for d in domains) + "  vs best fixed  vs oracle")
    for policy, row in mat.items():
        ratio = row["mixed"] / mat[best]["mixed"], row["mixed"] / mat["oracle"]["mixed"]
        print(f"{policy:32s}" + "".join(f"{row[d]:11.3f}" for d in domains) + f"  {ratio[0]:13.3f}  {ratio[1]:9.3f}")
    print(f"best fixed drafter over the stream: {best}; {result['queries']} queries, eval [{args.skip}, "
          f"{args.skip + args.limit}) of each domain")
    (out / "tune_hedge.json").write_text(json.dumps({**result, "args": vars(args)}, indent=2))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, OSError) as exc:
        sys.exit(f"{Path(__file__).name}: error: {exc}")
