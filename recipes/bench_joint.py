"""Speed benchmark: joint-setting HedgeSpec against fixed arms, dynamic_gamma and plain decoding.

    python recipes/bench_joint.py --data-dir ../shared/data --json results/bench_joint.json

A plan of runs on the one executor (specsel.study.executor): the same warm-up, batching,
interleaving, repeats, store and line schema as `specsel eval`. Two query streams, greedy, mixed and
batched as in the study, held out from the study (the first 30 queries of each domain) and from
tuning (queries 30-49 of MATH, HumanEval and MedQA):

    mixed    MATH, HumanEval, MedQA: queries [--skip, --skip + --limit) of each (default 50-59)
    general  AlpacaEval instructions and CNN/DailyMail articles: [--general-skip, + --limit) (20-29)

Runs of the mixed stream, at each --bsz:

    autoregressive, fixed/ARM     plain decoding and the --fixed arms
    joint/hedgespec:VARIANT       the joint setting's HedgeSpec variants (--variants; drafters x
                                  --gammas + the autoregressive arm, tokens/s objective)
    joint/dynamic_gamma:D         Hugging Face's dynamic draft length on drafter D (--dynamic-gamma)
    joint/oracle@G                every row plays, at length G, the drafter its query needs the fewest
                                  rounds with, known in hindsight from drafter/hedgespec's records:
                                  per-query selection with no learning cost (--oracle-gammas)
    drafter/hedgespec             (not timed, decoded first in each batch) HedgeSpec of the drafter
                                  setting (every drafter at --gamma, full information), beside
    drafter/fixed:D@G             (not timed) every drafter at --gamma: their rounds per query give
                                  that setting's best fixed drafter and per-query oracle exactly

and of the general stream, at each --general-bsz: autoregressive and the HedgeSpec variants.

HedgeSpec variants: factored (the study's joint HedgeSpec: specsel.learners.factored),
factored_no_prior (without the stream prior), factored_no_caps (without the batch caps, eq. 20),
factored_no_idle_prior (without eq. 23), factored_deferred (scores deferred three rounds at a
time), per_query (one learner per query over every drafter x gamma arm, lazy scoring, batch-aware
cost), row_cost (per_query, each row costed alone), no_ar (per_query without the autoregressive
arm), weighted (scores every drafter a row's learner weighs), full_scoring (lazy scoring off),
shared (one learner per batch, kept over the stream).

Every ratio is taken batch by batch between runs decoded side by side, then summarised as the
median (min-max) over batches and repeats; a ratio resting on a disturbed batch is marked
UNRELIABLE (evaluators.reliability). Every output must equal the autoregressive one. Lines go to
OUT/<stream>/queries.jsonl; rerunning the same command resumes. --json FILE writes the headline
ratios of the first --variants entry (and of each under "by_variant").
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from specsel.flags import add_flags, flag_parser, parse_flags, run_command

VARIANTS = {"factored": ("factored", {}), "factored_no_prior": ("factored", {"stream_prior": False}),
            "factored_no_caps": ("factored", {"batch_caps": False}),
            "factored_no_idle_prior": ("factored", {"idle_prior": False}),
            "factored_deferred": ("factored", {"score_every": 3}),
            "per_query": ("learner", {}), "row_cost": ("learner", {"batch_cost": False}), "no_ar": ("learner", {}),
            "weighted": ("learner", {"lazy_drafters": None}), "full_scoring": ("learner", {"lazy_scoring": False}),
            "shared": ("learner", {"shared": True})}
AR = "autoregressive"
DRAFTER_RUN = "drafter/hedgespec"


def parse_args(argv=None):
    ap = flag_parser("bench_joint", __doc__)
    add_flags(ap, "target", "data_dir", "domains", "skip", "limit", "drafters", "gammas", "gamma", "bsz", "repeats",
              "max_new_tokens", "score_every", "seed", "threads", "out", "json", "no_progress",
              skip=50, limit=10, repeats=3, out="results/bench_joint")
    ap.add_argument("--streams", default="mixed,general", help="comma list of mixed, general")
    ap.add_argument("--general-domains", default="alpaca,summarization", help="the general stream's domains")
    ap.add_argument("--general-skip", type=int, default=20, help="general: queries of each domain to skip")
    ap.add_argument("--general-bsz", default="1,4,8", help="batch sizes of the general stream")
    ap.add_argument("--fixed", default="ngram@4,eagle@2", help="fixed arms of the mixed stream (the best on the "
                    "tuning queries); the autoregressive baseline always runs")
    ap.add_argument("--variants", default="factored,per_query", help=f"HedgeSpec variants: {', '.join(VARIANTS)}; "
                    "the first is the one the --json ratios are for")
    ap.add_argument("--dynamic-gamma", default="ngram,eagle", help="drafters to run with dynamic_gamma in the mixed "
                    "stream ('' for none); ratios are over the fastest of them")
    ap.add_argument("--dynamic-start", type=int, default=None, help="dynamic_gamma's first length (default: "
                    "transformers' 20)")
    ap.add_argument("--oracle-gammas", default="2,4", help="lengths of the joint/oracle@G runs ('' runs none)")
    args = parse_flags(ap, argv)
    return read_lists(ap, args)


def read_lists(ap, args):
    """The comma lists of the command line, each refused in one line when bad."""
    from specsel.data import domains_argument
    from specsel.options import parse_csv, parse_ints
    args.variants = parse_csv(args.variants)
    bad = [v for v in args.variants if v not in VARIANTS] or ([] if args.variants else ["(none)"])
    if bad:
        ap.error(f"unknown variant(s) {', '.join(bad)}; choose from {', '.join(VARIANTS)}")
    args.streams = parse_csv(args.streams)
    if not args.streams or any(s not in ("mixed", "general") for s in args.streams):
        ap.error(f"--streams takes mixed and/or general (got {','.join(args.streams) or 'nothing'})")
    args.bsz, args.gammas = parse_ints(args.bsz, "--bsz"), parse_ints(args.gammas, "--gammas")
    args.general_bsz = parse_ints(args.general_bsz, "--general-bsz")
    args.oracle_gammas = parse_ints(args.oracle_gammas, "--oracle-gammas")
    if any(b < 1 for b in args.general_bsz) or any(g < 1 for g in args.oracle_gammas):
        ap.error("--general-bsz and --oracle-gammas must be integers >= 1")
    args.fixed = [f for f in parse_csv(args.fixed) if f != AR]
    args.dynamic = parse_csv(args.dynamic_gamma)
    args.stream_domains = {"mixed": domains_argument(ap, args.domains),
                           "general": domains_argument(ap, args.general_domains, "--general-domains")}
    return args


def hedge_runs(args, drafters) -> list:
    """joint/hedgespec:VARIANT for each --variants entry."""
    from specsel.study import RunSpec
    gammas = sorted(set(args.gammas), reverse=True)
    out = []
    for name in args.variants:
        kind, options = VARIANTS[name]
        options = dict(options)
        every = options.pop("score_every", None)
        arms = tuple(f"{d}@{g}" for d in drafters for g in gammas) + (() if name == "no_ar" else (AR,))
        out.append(RunSpec(f"joint/hedgespec:{name}", kind, setting="joint", learner="hedgespec", arms=arms,
                           gammas=tuple(args.gammas), options=tuple(options.items()), score_every=every))
    return out


def mixed_runs(args, drafters) -> tuple:
    """The mixed stream's runs (module docstring): the drafter setting's untimed runs first."""
    from specsel.study import RunSpec
    arms = tuple(f"{d}@{args.gamma}" for d in drafters)
    dynamic = {} if args.dynamic_start is None else {"start": args.dynamic_start}
    return (RunSpec(DRAFTER_RUN, "learner", setting="drafter", learner="hedgespec", arms=arms, timed=False),
            *(RunSpec(f"drafter/fixed:{a}", "fixed", arm=a, setting="drafter", timed=False) for a in arms),
            RunSpec(AR, "autoregressive", arm=AR),
            *(RunSpec(f"fixed/{a}", "fixed", arm=a) for a in args.fixed),
            *hedge_runs(args, drafters),
            *(RunSpec(f"joint/dynamic_gamma:{d}", "dynamic_gamma", arm=d, setting="joint", learner="dynamic_gamma",
                      options=tuple(dynamic.items())) for d in args.dynamic),
            *(RunSpec(f"joint/oracle@{g}", "oracle", setting="joint", gammas=(g,)) for g in args.oracle_gammas))


def oracle_arms(store, drafters):
    """For a joint/oracle@G run: the arm of each stream position, the drafter its query needs the
    fewest rounds with at length G, replayed from drafter/hedgespec's records of that query at the
    same batch size (decoded first in its batch; estimates for EAGLE heads, whose replays are not exact)."""
    from specsel import Arm
    from specsel.core.costs import RoundCost
    from specsel.replay.fullinfo import FullInfo, SettingEval

    def of_run(spec, bsz: int):
        gamma = spec.gammas[0]

        def arm_of(index: int):
            line = next((l for l in store.run_lines(DRAFTER_RUN, bsz) if l["index"] == index), None)
            if line is None:
                raise RuntimeError(f"bench_joint: {spec.name} needs {DRAFTER_RUN}'s records of query {index} first")
            ev = SettingEval(FullInfo([line], drafters), [f"{d}@{gamma}" for d in drafters], RoundCost())
            return Arm.parse(ev.oracle_arm[line["qid"]])
        return arm_of
    return of_run


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from specsel import SpecEngine
    from specsel.core.drafting import draft_calls
    from specsel.modeling.target import load_target
    from specsel.study import Executor, Phase, ResultStore, RunSpec, load_items, load_pool
    from specsel.study.decoding import EngineDecoder
    from specsel.study.policies import PolicyFactory
    from specsel.study.pool import replay_exact
    if args.threads:
        torch.set_num_threads(args.threads)
    target, tokenizer = load_target(args.target)
    pool = load_pool(target, args.drafters.split(",") if args.drafters else None)
    drafters, exact = list(pool), replay_exact(pool)
    check_pool(args, pool)
    engine = SpecEngine(target, pool, eos_token_id=tokenizer.eos_token_id)
    out = Path(args.out)
    cells = {}
    for stream in args.streams:
        skip = args.skip if stream == "mixed" else args.general_skip
        items = load_items(tokenizer, args.stream_domains[stream], args.data_dir, args.limit, args.seed, skip=skip)
        store = ResultStore(out / stream / "queries.jsonl", resume=True)
        factory = PolicyFactory(drafters, draft_calls(pool), seed=args.seed, oracle=oracle_arms(store, drafters))
        decoder = EngineDecoder(engine, factory, args.max_new_tokens, score_every=args.score_every)
        executor = Executor(items, store, decoder, seed=args.seed, progress=not args.no_progress,
                            extras={DRAFTER_RUN: {"replay_exact": exact}})
        runs = mixed_runs(args, drafters) if stream == "mixed" else (RunSpec(AR, "autoregressive", arm=AR),
                                                                     *hedge_runs(args, drafters))
        for bsz in (args.bsz if stream == "mixed" else args.general_bsz):
            executor.execute(Phase(bsz, runs, args.repeats, f"{stream} bsz {bsz}"))
            cells[f"{stream}_bsz{bsz}"] = report(store.lines, stream, bsz, runs, args, drafters, exact)
    return write_summary(cells, args, out)


def check_pool(args, pool) -> None:
    from specsel import Arm
    for name in args.fixed:
        if Arm.parse(name).drafter not in pool:
            raise ValueError(f"--fixed {name}: no drafter '{Arm.parse(name).drafter}' in the pool ({', '.join(pool)})")
    unknown = [d for d in args.dynamic if d not in pool]
    if unknown:
        raise ValueError(f"--dynamic-gamma {','.join(unknown)}: not in the pool ({', '.join(pool)}); pass "
                         "--dynamic-gamma '' to run none")


def report(lines, stream: str, bsz: int, runs, args, drafters, exact: dict) -> dict:
    """The cell's rows, lossless verdict, time split and (mixed) the drafter setting's figures; printed."""
    from evaluators.bench import bench_rows, format_rows, versus
    from evaluators.lines import complete_lines
    from evaluators.timing import batch_times, time_split
    lines = [l for l in complete_lines(lines) if l["bsz"] == bsz]
    timed = [s.name for s in runs if s.timed]
    fixed = [AR, *(f"fixed/{a}" for a in args.fixed)] if stream == "mixed" else []
    rows, best = bench_rows(lines, timed, bsz, args.repeats, references=fixed)
    reference = {l["qid"]: l["tokens"] for l in lines if l["run"] == AR}
    split = time_split([lines])
    print(f"\n{stream} stream, bsz {bsz}: {args.repeats} repeat(s); ratios batch by batch, median (min-max)")
    print(format_rows(rows, AR, best))
    print("where the time went (shares of wall time): prefill / verify / drafting / scoring+learner")
    for run in timed:
        if run in split:
            print(f"  {run:34s} " + " / ".join(f"{v:.0%}" for v in split[run].values()))
    dynamic = [r for r in timed if r.startswith("joint/dynamic_gamma:")]
    times = batch_times(lines)
    cell = {"stream": stream, "bsz": bsz, "rows": rows, "best_fixed": best,
            "versus_dynamic": {r: versus(times, r, dynamic, bsz, args.repeats) for r in timed if dynamic},
            "lossless": all(l["tokens"] == reference.get(l["qid"]) for l in lines),
            "time_split": {r: split[r] for r in timed if r in split}}
    if stream == "mixed" and any(l["run"] == DRAFTER_RUN for l in lines):
        cell["drafter_setting"] = ds = drafter_setting(lines, drafters, args.gamma, exact)
        print(f"drafter setting (gamma {args.gamma}, {ds['queries']} queries): HedgeSpec MAT {ds['hedge_mat']:.3f}; "
              f"best fixed {ds['best_fixed']} {ds['best_fixed_mat']:.3f}; oracle {ds['oracle_mat']:.3f} "
              f"({'exact' if ds['exact'] else 'replay estimates'})")
    return cell


def drafter_setting(lines: list[dict], drafters, gamma: int, exact: dict) -> dict:
    """MAT of drafter-setting HedgeSpec, of the best fixed drafter and of the per-query oracle. The
    last two come from the drafter/fixed:D@G runs (every drafter decoded at `gamma`: exact), and from
    the replay of HedgeSpec's full-information records too (*_replay: estimates for drafters whose
    replays are not exact, EAGLE heads and LoRA experts)."""
    from specsel.core.costs import RoundCost
    from specsel.replay.fullinfo import FullInfo, SettingEval
    run = [line for line in lines if line["run"] == DRAFTER_RUN]
    ev = SettingEval(FullInfo(run, drafters, replay_exact=exact), [f"{d}@{gamma}" for d in drafters], RoundCost())
    tokens = sum(len(line["tokens"]) for line in run)
    best = int(ev.total.argmin())
    out = {"hedge_mat": tokens / sum(len(line["records"]) for line in run), "best_fixed_replay": ev.arms[best],
           "best_fixed_mat_replay": tokens / ev.total[best], "replay_exact": ev.exact, "queries": len(run),
           "oracle_mat_replay": tokens / sum(ev.oracle_rounds.values())}
    rounds = {d: {l["qid"]: len(l["records"]) for l in lines if l["run"] == f"drafter/fixed:{d}@{gamma}"}
              for d in drafters}
    qids = [line["qid"] for line in run]
    if not all(set(r) == set(qids) for r in rounds.values()):
        return {**out, "best_fixed": out["best_fixed_replay"], "best_fixed_mat": out["best_fixed_mat_replay"],
                "oracle_mat": out["oracle_mat_replay"], "exact": ev.exact}
    totals = {d: sum(r.values()) for d, r in rounds.items()}
    fixed = min(totals, key=totals.get)
    return {**out, "best_fixed": f"{fixed}@{gamma}", "best_fixed_mat": tokens / totals[fixed],
            "oracle_mat": tokens / sum(min(rounds[d][q] for d in drafters) for q in qids), "exact": True}


def headline(cells: dict, hedge: str) -> dict:
    """The throughput issue's ratios for one HedgeSpec variant, each a dict by batch size: the median
    of the per-batch ratios with min, max, count and `unreliable` (None, or why it cannot be trusted)."""
    out: dict = {"hedgespec_run": hedge}

    def put(key: str, bsz: int, value) -> None:
        if value is not None:
            out.setdefault(key, {})[str(bsz)] = value
    for cell in cells.values():
        rows, bsz = {r["run"]: r for r in cell["rows"]}, cell["bsz"]
        if hedge not in rows:
            continue
        if cell["stream"] == "general":
            put("joint_hedge_over_ar_general", bsz, rows[hedge]["over_baseline"])
            continue
        put("joint_hedge_over_best_fixed", bsz, rows[hedge]["over_best"])
        dynamic = [r for r in rows if r.startswith("joint/dynamic_gamma:")]
        if dynamic:
            put("joint_hedge_over_dynamic_gamma", bsz, cell["versus_dynamic"].get(hedge))
        for run in (r for r in rows if r.startswith("joint/oracle@")):
            put(f"{run.split('/')[1]}_over_best_fixed", bsz, rows[run]["over_best"])
        if "drafter_setting" in cell:
            ds = cell["drafter_setting"]
            put("drafter_hedge_mat_over_best_fixed", bsz, ds["hedge_mat"] / ds["best_fixed_mat"])
            put("drafter_hedge_mat_over_oracle", bsz, ds["hedge_mat"] / ds["oracle_mat"])
    return out


def write_summary(cells: dict, args, out: Path) -> int:
    """OUT/summary.json (kind bench_joint, the command, every cell) and --json's headline ratios."""
    import time

    by_variant = {v: headline(cells, f"joint/hedgespec:{v}") for v in args.variants}
    summary = {"kind": "bench_joint", "command": "python recipes/bench_joint.py " + " ".join(sys.argv[1:]),
               "created": time.strftime("%Y-%m-%d %H:%M:%S"), **by_variant[args.variants[0]],
               "by_variant": by_variant, "lossless": all(c["lossless"] for c in cells.values()), "cells": cells}
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=1, default=str) + "\n")
    print(f"lossless: {summary['lossless']}; written {out}/summary.json" + (f" and {args.json}" if args.json else ""))
    return 0 if summary["lossless"] else 1


if __name__ == "__main__":
    sys.exit(run_command(main, "bench_joint"))
