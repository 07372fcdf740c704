"""Choose HedgeSpec's regret discount on a tuning stream disjoint from the study's queries.

    python recipes/tune_hedge.py --data-dir ../shared/data --skip 30 --limit 20

Decodes eval queries [--skip, --skip + --limit) of every domain (the study evaluates the
first --limit, default 30, so the default tuning stream never overlaps it) once, greedy,
with full information (every drafter of the pool scores every committed position), then
replays HedgeSpec offline with every --discounts value (its default loss: each drafter's
acceptance per position) and plain NormalHedge (length loss, no discount), next to every
fixed drafter, the best fixed drafter over the stream and the per-query oracle. Greedy
records replay exactly (specsel.replay.simulate), so one decoding pass serves every discount.
HedgeSpec is replayed with the study's feedback delay: --score-every k delivers its rounds k at a
time (specsel.replay.simulate.simulate), as deferred scoring does live.
The pass runs on the one executor (specsel.study.executor): records are appended per batch to
--out/queries.jsonl in the study's schema; a rerun resumes. Prints a table and writes --out/tune_hedge.json.
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

from specsel.data import user_domain_records
from specsel.flags import add_flags, flag_parser, parse_flags, run_command
from specsel.learners import HedgeSpec
from specsel.modeling.target import load_target
from specsel.replay.fixed import rounds_fixed
from specsel.replay.fullinfo import acceptance_matrix
from specsel.replay.simulate import simulate
from specsel.study import load_items, load_pool, parse_csv, pool_weights


def parse_args(argv=None):
    ap = flag_parser("tune_hedge", __doc__)
    add_flags(ap, "target", "data_dir", "domains", "skip", "limit", "drafters", "gamma", "discounts", "bsz",
              "max_new_tokens", "score_every", "threads", "out", "no_progress", skip=30, limit=20,
              out="results/tune_hedge")
    args = parse_flags(ap, argv)
    from specsel.data import domains_argument
    from specsel.flags import one_int
    args.domain_names = domains_argument(ap, args.domains)
    args.bsz = one_int(args, "bsz")
    return args


def decode(args, out: Path) -> tuple[list[dict], list[str]]:
    """Full-information records of every tuning query (the first drafter played at --gamma, every
    drafter scored), decoded by the one executor into --out/queries.jsonl (fsynced batches; a rerun
    resumes)."""
    import torch

    from specsel import SpecEngine
    from specsel.core.drafting import draft_calls
    from specsel.study import Executor, Phase, ResultStore, RunSpec
    from specsel.study.decoding import EngineDecoder
    from specsel.study.policies import PolicyFactory
    if args.threads:
        torch.set_num_threads(args.threads)
    target, tokenizer = load_target(args.target)
    pool = load_pool(target, parse_csv(args.drafters) if args.drafters else None)
    items = load_items(tokenizer, args.domain_names, args.data_dir, args.limit, skip=args.skip)
    stamp = {"target": args.target, "weights": pool_weights(list(pool), None), "gamma": args.gamma,
             "max_new_tokens": args.max_new_tokens, "queries": [it.qid for it in items]}
    users = user_domain_records(args.domain_names)      # a changed NAME=PATH file is not mixed in
    stamp.update({"user_domains": users} if users else {})
    config = out / "config.json"
    if (out / "queries.jsonl").exists() and config.exists() and json.loads(config.read_text()) != stamp:
        raise ValueError(f"{out} holds records of another target, pool, gamma, query set or user data file: "
                         "pass another --out")
    config.write_text(json.dumps(stamp))
    arm = f"{next(iter(pool))}@{args.gamma}"
    run = RunSpec(f"fullinfo/{arm}", "fullinfo", arm=arm, timed=False)
    store = ResultStore(out / "queries.jsonl", resume=True)
    decoder = EngineDecoder(SpecEngine(target, pool, eos_token_id=tokenizer.eos_token_id),
                            PolicyFactory(list(pool), draft_calls(pool)), args.max_new_tokens,
                            score_every=args.score_every)
    Executor(items, store, decoder, progress=not args.no_progress).execute(
        Phase(args.bsz, (run,), desc="full-information pass"))
    lines = {line["qid"]: line for line in store.run_lines(run.name, args.bsz)}
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
    sys.exit(run_command(main, "tune_hedge"))
