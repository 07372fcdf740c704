"""Speed benchmark: joint-setting HedgeSpec against fixed arms, dynamic_gamma and plain decoding.

    python recipes/bench_joint.py --data-dir ../shared/data --json results/bench_joint.json

Two query streams, greedy, mixed and batched as in the study, held out from the study (the first
30 queries of each domain) and from tuning (queries 30-49 of MATH, HumanEval and MedQA):

    mixed    MATH, HumanEval, MedQA: queries [--skip, --skip + --limit) of each (default 50-59)
    general  AlpacaEval instructions and CNN/DailyMail articles: [--general-skip, + --limit) (20-29)

Cells, each a stream at one batch size:

    (mixed, --bsz)          autoregressive, the --fixed arms, the HedgeSpec --variants of the joint
                            setting (pool x --gammas + the autoregressive arm, tokens/s objective),
                            dynamic_gamma/D for each --dynamic-gamma drafter D (Hugging Face's
                            dynamic draft length), and drafter/hedgespec: HedgeSpec of the drafter
                            setting (the drafters at --gamma, full information; first repeat only),
                            beside drafter/fixed:D, every drafter D at --gamma (first repeat only):
                            their rounds per query give that setting's best fixed drafter and
                            per-query oracle exactly (greedy rounds are deterministic); the replay of
                            drafter/hedgespec's records gives them too, as estimates for EAGLE heads
                            (teacher-forced: optimistic), under drafter_setting's *_replay keys;
                            and oracle@G for G in --oracle-gammas: every row plays, at length G, the
                            drafter its query needs the fewest rounds with, known in hindsight from
                            drafter/hedgespec's records -- the speed of per-query selection with no
                            learning cost, a bound no per-query learner is expected to beat
    (general, b)            autoregressive and the HedgeSpec variants, for b in --general-bsz

HedgeSpec variants: factored (the study's joint HedgeSpec: specsel.learners.factored),
factored_no_prior (factored without the stream prior: each query starts from nothing), per_query
(one learner per query over every drafter x gamma arm, lazy scoring, batch-aware cost), row_cost
(per_query with each row costed alone), no_ar (per_query without the autoregressive arm),
weighted (scores every drafter a row's learner weighs), full_scoring (lazy scoring off), shared
(one learner per batch, kept over the stream), factored_deferred (factored with its drafters'
scores deferred three rounds at a time, generate(score_every=3), the study's default before
2026-11-30; the other variants use --score-every).

The --json ratios are those of the first --variants entry (and of each under "by_variant").
Every run is repeated --repeats times (default 3), the repeats interleaved batch by batch, the
order of runs rotated per batch, so machine drift spreads evenly. Ratios are taken within each
repeat and reported as the median with min and max. Every output must equal the autoregressive
one (greedy is lossless). Finished batches are appended to OUT/CELL/repeatK/batches.jsonl;
rerunning the same command resumes. --json FILE writes the ratios the throughput issue targets.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from evaluators.lines import complete_lines
from evaluators.records import to_dict
from evaluators.timing import best_run, ratio, run_totals, spread, time_split, tokens_per_s
from specsel.data import DOMAIN_SPEC_HELP, domains_argument
from specsel.study import ResultStore, load_items, load_pool, warm_cost_model, warm_stream_prior

VARIANTS = {"per_query": {}, "row_cost": {"batch_cost": False}, "no_ar": {}, "weighted": {"lazy_drafters": None},
            "full_scoring": {"lazy_scoring": False}, "shared": {"shared": True}, "factored": {},
            "factored_no_prior": {"stream_prior": False}, "factored_no_caps": {"batch_caps": False},
            "factored_no_idle_prior": {"idle_prior": False}, "factored_deferred": {"score_every": 3}}
AR = "autoregressive"
DRAFTER_RUN = "drafter/hedgespec"
DRAFTER_FIXED = "drafter/fixed:"      # + a drafter: the drafter setting's fixed arms, decoded live
ORACLE = "oracle"


def parse_args(argv=None):
    from specsel.modeling.target import EMBEDDED_DEFAULT
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", default=EMBEDDED_DEFAULT)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--streams", default="mixed,general", help="comma list of mixed, general")
    ap.add_argument("--domains", default="math,humaneval,medqa", help="the mixed stream's " + DOMAIN_SPEC_HELP)
    ap.add_argument("--general-domains", default="alpaca,summarization", help="the general stream's domains")
    ap.add_argument("--skip", type=int, default=50, help="mixed: queries of each domain to skip (study: 0-29, "
                    "tuning: 30-49)")
    ap.add_argument("--general-skip", type=int, default=20, help="general: queries of each domain to skip")
    ap.add_argument("--limit", type=int, default=10, help="queries per domain")
    ap.add_argument("--drafters", default=None, help="comma list of pool drafters (default: the whole pool)")
    ap.add_argument("--fixed", default="ngram@4,eagle@2", help="fixed arms of the mixed cell (the best on the "
                    "tuning queries); the autoregressive baseline always runs")
    ap.add_argument("--variants", default="factored,per_query", help=f"HedgeSpec variants: {', '.join(VARIANTS)}; "
                    "the first is the one the --json ratios are for (factored: the study's joint HedgeSpec)")
    ap.add_argument("--dynamic-gamma", default="ngram,eagle", help="drafters to run with dynamic_gamma in the "
                    "mixed cell ('' for none); ratios are over the fastest of them")
    ap.add_argument("--dynamic-start", type=int, default=None, help="dynamic_gamma's first length "
                    "(default: transformers' 20)")
    ap.add_argument("--oracle-gammas", default="2,4", help="lengths of the oracle@G runs of the mixed cell "
                    "(hindsight per-query drafter; '' runs none)")
    ap.add_argument("--gammas", default="1,2,4", help="speculation lengths of the joint arms")
    ap.add_argument("--gamma", type=int, default=4, help="the drafter setting's speculation length")
    ap.add_argument("--bsz", type=int, default=4, help="batch size of the mixed cell")
    ap.add_argument("--general-bsz", default="1,4,8", help="batch sizes of the general cells")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats of every run; ratios are the median "
                    "over repeats with their min and max (this machine drifts by about 15%%)")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--score-every", type=int, default=1, help="learners hear of their rounds this many at a time "
                    "(the study's --score-every; a variant may set its own)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default="results/bench_joint")
    ap.add_argument("--json", default=None, help="also write the target ratios (medians) to this file")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error(f"--repeats must be >= 1 (got {args.repeats})")
    args.variants = [v for v in args.variants.split(",") if v]
    bad = [v for v in args.variants if v not in VARIANTS] or ([] if args.variants else ["(none)"])
    if bad:
        ap.error(f"unknown variant(s) {', '.join(bad)}; choose from {', '.join(VARIANTS)}")
    args.streams = [s for s in args.streams.split(",") if s]
    if not args.streams or any(s not in ("mixed", "general") for s in args.streams):
        ap.error(f"--streams takes mixed and/or general (got {','.join(args.streams) or 'nothing'})")
    try:
        args.general_bsz = [int(b) for b in args.general_bsz.split(",") if b]
    except ValueError:
        ap.error(f"--general-bsz must be integers, e.g. 1,4,8 (got {args.general_bsz})")
    if args.bsz < 1 or any(b < 1 for b in args.general_bsz):
        ap.error("batch sizes must be >= 1")
    try:
        args.oracle_gammas = [int(g) for g in args.oracle_gammas.split(",") if g]
    except ValueError:
        ap.error(f"--oracle-gammas must be integers, e.g. 2,4 (got {args.oracle_gammas})")
    if any(g < 1 for g in args.oracle_gammas):
        ap.error("--oracle-gammas must be >= 1")
    args.stream_domains = {"mixed": domains_argument(ap, args.domains),
                           "general": domains_argument(ap, args.general_domains, "--general-domains")}
    return args


def cells(args, drafters) -> list[dict]:
    """The (stream, bsz) cells of this benchmark and the runs of each."""
    hedge = [f"hedgespec/{v}" for v in args.variants]
    out = []
    if "mixed" in args.streams:
        fixed = [f for f in args.fixed.split(",") if f and f != AR]
        dynamic = [f"dynamic_gamma/{d}" for d in args.dynamic_gamma.split(",") if d]
        out.append({"name": f"mixed_bsz{args.bsz}", "stream": "mixed", "bsz": args.bsz, "fixed": fixed,
                    "runs": [AR, *fixed, *hedge, *dynamic, *(f"{ORACLE}@{g}" for g in args.oracle_gammas),
                             DRAFTER_RUN, *(f"{DRAFTER_FIXED}{d}" for d in drafters)]})
    if "general" in args.streams:
        out += [{"name": f"general_bsz{b}", "stream": "general", "bsz": b, "fixed": [], "runs": [AR, *hedge]}
                for b in args.general_bsz]
    return out


def check_pool(args, pool) -> None:
    for name in [f for f in args.fixed.split(",") if f and f != AR]:
        from specsel import Arm
        arm = Arm.parse(name)
        if arm.drafter not in pool:
            raise SystemExit(f"bench_joint: --fixed {name}: no drafter '{arm.drafter}' in the pool ({', '.join(pool)})")
    unknown = [d for d in args.dynamic_gamma.split(",") if d and d not in pool]
    if unknown:
        raise SystemExit(f"bench_joint: --dynamic-gamma {','.join(unknown)}: not in the pool ({', '.join(pool)}); "
                         "pass --dynamic-gamma '' to run none")


def policy_options(variant: str) -> dict:
    """A variant's options for its policy (score_every goes to generate(), see run_score_every)."""
    return {k: v for k, v in VARIANTS[variant].items() if k != "score_every"}


def run_score_every(run: str, args) -> int:
    """How many rounds a learner run's full-information scores are deferred: its variant's, else --score-every."""
    kind, _, name = run.partition("/")
    return VARIANTS.get(name, {}).get("score_every", args.score_every) if kind == "hedgespec" else args.score_every


def make_policy(run: str, args, drafters, store, calls=None):
    """The policy of one run (fresh learners; a HedgeSpec cost model re-fed the stored rounds)."""
    from specsel import Arm
    from specsel.learners.dynamic_gamma import DynamicGamma
    from specsel.learners.policy import LearnerPolicy
    kind, _, name = run.partition("/")
    if run == AR:
        return Arm.autoregressive()
    if kind == "dynamic_gamma":
        return DynamicGamma(name, **({} if args.dynamic_start is None else {"start": args.dynamic_start}))
    if run == DRAFTER_RUN:
        return LearnerPolicy("hedgespec", [Arm(d, args.gamma) for d in drafters], drafters, seed=args.seed)
    if run.startswith(DRAFTER_FIXED):
        return Arm(run[len(DRAFTER_FIXED):], args.gamma)
    if kind == "hedgespec" and name.startswith("factored"):
        from specsel.learners.factored import FactoredHedge
        policy = FactoredHedge(drafters, [int(g) for g in args.gammas.split(",")], seed=args.seed, draft_calls=calls,
                               **policy_options(name))
        done = complete_lines(line for line in store.lines if line["run"] == run)
        warm_cost_model(policy, done)
        warm_stream_prior(policy, done)
        return policy
    if kind == "hedgespec":
        gammas = sorted({int(g) for g in args.gammas.split(",")}, reverse=True)
        arms = [Arm(d, g) for d in drafters for g in gammas] + ([] if name == "no_ar" else [Arm.autoregressive()])
        policy = LearnerPolicy("hedgespec", arms, drafters, objective="throughput", seed=args.seed, draft_calls=calls,
                               **policy_options(name))
        warm_cost_model(policy, [line for line in store.lines if line["run"] == run])
        return policy
    return Arm.parse(run)


def run_cell(engine, cell, items, args, drafters, out: Path, bar) -> list[list[dict]]:
    """Decode every run of one cell, repeats interleaved batch by batch; the lines of each repeat."""
    from specsel.core.drafting import draft_calls
    from specsel.engine import PrefillCache
    from specsel.learners.policy import LearnerPolicy
    prefills = PrefillCache()       # the runs of a batch share its target prefill (its time is still charged)
    stores = [ResultStore(out / cell["name"] / f"repeat{k + 1}" / "batches.jsonl", resume=True)
              for k in range(args.repeats)]
    runs, bsz = cell["runs"], cell["bsz"]
    calls = draft_calls(engine.drafters)        # the experts of one head draft in one call
    policies = [{run: None if run.startswith(f"{ORACLE}@") else make_policy(run, args, drafters, store, calls)
                 for run in runs}
                for store in stores]
    batches = [list(range(i, min(i + bsz, len(items)))) for i in range(0, len(items), bsz)]
    first_only = [r for r in runs if untimed(r)]
    timed = [r for r in runs if not untimed(r)]
    for b, batch in enumerate(batches):
        for k, store in enumerate(stores):      # repeats interleaved batch by batch, each its own order
            turn = (b + k) % len(timed)
            # the drafter-setting runs first (repeat 1 only): the oracle runs play from its records
            for run in (first_only if k == 0 else []) + timed[turn:] + timed[:turn]:
                bar.update(1)
                if (run, bsz, b) in store.done:
                    continue
                policy = policies[k][run]
                if run.startswith(f"{ORACLE}@"):
                    gamma = int(run.partition("@")[2])
                    policy = oracle_arms(stores[0].lines, [items[i].qid for i in batch], drafters, gamma)
                learner = isinstance(policy, LearnerPolicy)
                if learner:
                    policy.seek(batch[0])
                res = engine.generate([items[i].prompt for i in batch], policy, max_new_tokens=args.max_new_tokens,
                                      feedback="full" if learner else "bandit",
                                      score_every=run_score_every(run, args) if learner else 1,
                                      prefill_cache=prefills)
                store.append([{"run": run, "bsz": bsz, "batch": b, "batch_qids": [items[i].qid for i in batch],
                               "row": r, "index": i, "qid": items[i].qid, "tokens": res.tokens[r],
                               "batch_wall_s": res.wall_s, "batch_prefill_s": res.prefill_s,
                               "records": [to_dict(rec) for rec in res.records if rec.row == r]}
                              for r, i in enumerate(batch)])
    return [complete_lines(store.lines) for store in stores]


def untimed(run: str) -> bool:
    """The drafter setting's runs: accepted lengths only, decoded in the first repeat."""
    return run == DRAFTER_RUN or run.startswith(DRAFTER_FIXED)


def oracle_arms(lines: list[dict], qids: list[str], drafters, gamma: int) -> list:
    """Per query, the drafter that needs the fewest rounds at length `gamma`, replayed from the
    drafter-setting run's full-information records of these queries (estimates for EAGLE heads)."""
    from evaluators.fullinfo import FullInfo, SettingEval
    from specsel import Arm
    from specsel.core.costs import RoundCost
    run = [line for line in complete_lines(lines) if line["run"] == DRAFTER_RUN and line["qid"] in qids]
    if len(run) != len(qids):
        raise RuntimeError("bench_joint: the oracle runs need drafter/hedgespec's records of the same batch first")
    ev = SettingEval(FullInfo(run, drafters), [f"{d}@{gamma}" for d in drafters], RoundCost())
    return [Arm.parse(ev.oracle_arm[q]) for q in qids]


def drafter_setting(lines: list[dict], drafters, gamma: int, exact: dict) -> dict:
    """MAT of drafter-setting HedgeSpec, of the best fixed drafter and of the per-query oracle.
    The last two come from the drafter/fixed:D runs (every drafter decoded at `gamma`: exact)
    when they ran, and from the replay of HedgeSpec's full-information records too (*_replay:
    estimates for drafters whose replays are not exact, EAGLE heads and LoRA experts)."""
    from evaluators.fullinfo import FullInfo, SettingEval
    from specsel.core.costs import RoundCost
    run = [line for line in lines if line["run"] == DRAFTER_RUN]
    fi = FullInfo(run, drafters, replay_exact=exact)
    ev = SettingEval(fi, [f"{d}@{gamma}" for d in drafters], RoundCost())
    tokens = sum(len(line["tokens"]) for line in run)
    hedge = tokens / sum(len(line["records"]) for line in run)
    best = int(ev.total.argmin())
    out = {"hedge_mat": hedge, "best_fixed_replay": ev.arms[best], "best_fixed_mat_replay": tokens / ev.total[best],
           "oracle_mat_replay": tokens / sum(ev.oracle_rounds.values()), "replay_exact": ev.exact,
           "queries": len(run)}
    rounds = {d: {line["qid"]: len(line["records"]) for line in lines if line["run"] == f"{DRAFTER_FIXED}{d}"}
              for d in drafters}
    qids = [line["qid"] for line in run]
    if all(set(r) == set(qids) for r in rounds.values()):
        totals = {d: sum(r.values()) for d, r in rounds.items()}
        fixed = min(totals, key=totals.get)
        oracle = sum(min(rounds[d][q] for d in drafters) for q in qids)
        return {**out, "best_fixed": f"{fixed}@{gamma}", "best_fixed_mat": tokens / totals[fixed],
                "oracle_mat": tokens / oracle, "exact": True}
    return {**out, "best_fixed": out["best_fixed_replay"], "best_fixed_mat": out["best_fixed_mat_replay"],
            "oracle_mat": out["oracle_mat_replay"], "exact": ev.exact}


def report(cell, per_repeat) -> list[dict]:
    """One row per run (dynamic_gamma and the drafter-setting run aside): median tokens/s, MAT,
    and tokens/s over autoregressive and over the cell's best fixed arm, within each repeat."""
    totals = [run_totals(lines) for lines in per_repeat]
    timed = [t for t in totals if all(r in t for r in cell["runs"] if not untimed(r))]
    best = best_run(timed, [AR, *cell["fixed"]])
    rows = []
    for run in cell["runs"]:
        if untimed(run):
            continue
        rows.append({"run": run, "tokens_per_s": spread([tokens_per_s(t, run) for t in timed])["median"],
                     "mat": spread([t[run]["tokens"] / t[run]["rounds"] for t in timed])["median"],
                     "over_ar": ratio(timed, run, AR), "over_best_fixed": ratio(timed, run, best),
                     "best_fixed": best})
    print(f"\n{cell['name']}: {len(timed)} repeat(s), medians (min-max over repeats); best fixed: {best}")
    print(f"{'run':24s} {'tok/s':>7s} {'MAT':>6s} {'x autoregressive':>22s} {'x best fixed':>22s}")
    for row in rows:
        a, f = row["over_ar"], row["over_best_fixed"]
        print(f"{row['run']:24s} {row['tokens_per_s']:7.2f} {row['mat']:6.3f} {a['median']:7.3f} "
              f"({a['min']:.3f}-{a['max']:.3f}) {f['median']:7.3f} ({f['min']:.3f}-{f['max']:.3f})")
    split = time_split(per_repeat)
    print("where the time went (shares of wall time, all repeats): prefill / verify / drafting / scoring+learner")
    for row in rows:
        row["time_split"] = split[row["run"]]
        print(f"{row['run']:24s} " + " / ".join(f"{v:.0%}" for v in split[row["run"]].values()))
    return rows


def targets(results: dict, args) -> dict:
    """The throughput issue's ratios (medians) for the first --variants entry, and under
    "by_variant" for every variant; the lossless verdict and every cell's rows."""
    by_variant = {v: variant_targets(results, args, f"hedgespec/{v}") for v in args.variants}
    out = {**by_variant[args.variants[0]], "by_variant": by_variant}
    out["lossless"] = all(c["lossless"] for c in results.values())
    out["cells"] = {name: c["rows"] for name, c in results.items()}
    return out


def variant_targets(results: dict, args, hedge: str) -> dict:
    out: dict = {"hedgespec_run": hedge}
    mixed = results.get(f"mixed_bsz{args.bsz}")
    if mixed:
        totals = [run_totals(lines) for lines in mixed["lines"]]
        timed = [t for t in totals if hedge in t]
        out["joint_hedge_over_best_fixed"] = ratio(timed, hedge, mixed["rows"][0]["best_fixed"])["median"]
        dynamic = [r for r in mixed["runs"] if r.startswith("dynamic_gamma/")]
        if dynamic:
            out["joint_hedge_over_dynamic_gamma"] = ratio(timed, hedge, dynamic)["median"]
        oracles = [r for r in mixed["runs"] if r.startswith(f"{ORACLE}@")]
        if oracles:     # the bound of per-query selection, and how close HedgeSpec comes to it
            best = mixed["rows"][0]["best_fixed"]
            out["oracle_over_best_fixed"] = {r: ratio(timed, r, best)["median"] for r in oracles}
            out["joint_hedge_over_oracle"] = {r: ratio(timed, hedge, r)["median"] for r in oracles}
        ds = mixed["drafter_setting"]
        out["drafter_hedge_mat_over_best_fixed"] = ds["hedge_mat"] / ds["best_fixed_mat"]
        out["drafter_hedge_mat_over_oracle"] = ds["hedge_mat"] / ds["oracle_mat"]
        out["drafter_setting"] = ds
    general = {str(c["bsz"]): c for c in results.values() if c["stream"] == "general"}
    if general:
        out["joint_hedge_over_ar_general"] = {b: next(r for r in c["rows"] if r["run"] == hedge)["over_ar"]["median"]
                                              for b, c in general.items()}
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    from tqdm.auto import tqdm

    from specsel import Arm, SpecEngine
    from specsel.modeling.target import load_target
    from specsel.study.pool import replay_exact
    if args.threads:
        torch.set_num_threads(args.threads)
    target, tokenizer = load_target(args.target)
    pool = load_pool(target, [d for d in args.drafters.split(",") if d] if args.drafters else None)
    drafters = list(pool)
    check_pool(args, pool)
    skips = {"mixed": args.skip, "general": args.general_skip}
    items = {s: load_items(tokenizer, args.stream_domains[s], args.data_dir, args.limit, args.seed, skip=skips[s])
             for s in args.streams}
    engine = SpecEngine(target, pool, eos_token_id=tokenizer.eos_token_id)
    first = next(iter(items.values()))[0].prompt[-16:]
    engine.generate([first], Arm(drafters[0], 4), max_new_tokens=4)    # warm up
    todo = cells(args, drafters)
    out = Path(args.out)
    per_batch = {c["name"]: len(c["runs"]) * args.repeats - (args.repeats - 1) * sum(map(untimed, c["runs"]))
                 for c in todo}       # the drafter-setting runs decode in the first repeat only
    bar = tqdm(total=sum(per_batch[c["name"]] * -(-len(items[c["stream"]]) // c["bsz"]) for c in todo),
               desc="bench_joint", unit="run", disable=args.no_progress)
    per_cell = {c["name"]: run_cell(engine, c, items[c["stream"]], args, drafters, out, bar) for c in todo}
    bar.close()
    results = {}
    for cell in todo:
        per_repeat = per_cell[cell["name"]]
        reference = {l["qid"]: l["tokens"] for l in per_repeat[0] if l["run"] == AR}
        lossless = all(l["tokens"] == reference[l["qid"]] for lines in per_repeat for l in lines)
        results[cell["name"]] = {**cell, "lines": per_repeat, "lossless": lossless, "rows": report(cell, per_repeat)}
        if DRAFTER_RUN in cell["runs"]:
            ds = drafter_setting(per_repeat[0], drafters, args.gamma, replay_exact(pool))
            results[cell["name"]]["drafter_setting"] = ds
            print(f"drafter setting ({drafters} at gamma {args.gamma}, {ds['queries']} queries): HedgeSpec MAT "
                  f"{ds['hedge_mat']:.3f}; best fixed {ds['best_fixed']} {ds['best_fixed_mat']:.3f}; oracle "
                  f"{ds['oracle_mat']:.3f} ({'exact' if ds['exact'] else 'replay estimates'}); replayed from "
                  f"HedgeSpec's records: best fixed {ds['best_fixed_replay']} {ds['best_fixed_mat_replay']:.3f}, "
                  f"oracle {ds['oracle_mat_replay']:.3f}")
    summary = targets(results, args)
    shown = ("cells", "drafter_setting", "by_variant")
    print("\n" + json.dumps({k: v for k, v in summary.items() if k not in shown}, indent=1))
    for variant, keys in summary["by_variant"].items():
        print(f"{variant}: " + ", ".join(f"{k} {v}" for k, v in keys.items() if k not in shown + ("hedgespec_run",)))
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps({**summary, "args": vars(args)}, indent=1) + "\n")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
    print(f"lossless: {summary['lossless']}; written {out}/summary.json" + (f" and {args.json}" if args.json else ""))
    return 0 if summary["lossless"] else 1


if __name__ == "__main__":
    sys.exit(main())
