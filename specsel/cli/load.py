"""`specsel load`: drafter selection under load, a sweep of closed and open loops.

    specsel load --data-dir ../shared/data --concurrency 1,2,4,8,16 --out results/load

Requests of a mixed stream (default MATH, HumanEval, MedQA, AlpacaEval and CNN/DailyMail; held-out
queries 50+ of each) arrive over time and are served by continuous batching. At every load every
policy serves the same requests: plain decoding, every fixed arm, dynamic_gamma, vLLM's rule,
a batch-size -> gamma table (the last two chosen on tuning queries 30+, never the evaluated ones)
and the learners (the joint HedgeSpec, UCBSpec). It prints the table and the targets' verdicts and
writes OUT/ (summary.json/csv, table.txt, plots, queries.jsonl); --json FILE writes the targets'
ratios (medians). Interrupted: rerun with --resume.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

from specsel.flags import add_flags

DEFAULT_DOMAINS = "math,humaneval,medqa,alpaca,summarization"
DEFAULT_DRAFTERS = "ngram,eagle"


def add_load_arguments(ap: argparse.ArgumentParser) -> None:
    add_flags(ap, "target", "dtype", "device", "pool", "data_dir", "domains", "skip", "limit", "drafters", "gammas",
              "concurrency", "max_batch", "learners", "repeats", "max_new_tokens", "seed", "threads", "out", "json",
              "resume", "no_progress", "router", domains=DEFAULT_DOMAINS, skip=50, limit=4, drafters=None,
              learners="hedgespec,ucbspec", repeats=3, out="results/load")
    ap._option_string_actions["--drafters"].help = (f"comma list of pool drafters (default: {DEFAULT_DRAFTERS}; "
                                                    "with --url, the server's pool)")
    ap.add_argument("--rates", default="", help="open-loop loads: Poisson arrivals per second (comma list; "
                    "default none), each with at most --max-batch running")
    ap.add_argument("--chunk", type=int, default=8, help="requests per executor batch (at least 4x the concurrency)")
    ap.add_argument("--fixed", default=None, help="fixed arms to run (default: every drafter at every --gammas)")
    ap.add_argument("--tune-skip", type=int, default=30, help="tuning queries start here in each domain (the rule "
                    "and the table are chosen on them)")
    ap.add_argument("--tune-limit", type=int, default=2, help="tuning queries per domain")
    ap.add_argument("--baselines", default=None, help="a baselines.json of an earlier tuning (OUT/tuning/) to reuse")
    ap.add_argument("--url", default=None, help="drive a running `specsel serve` over HTTP (e.g. "
                    "http://127.0.0.1:8000) instead of decoding here: plain decoding and the fixed arms pinned "
                    "per request, and the server's own policy")


def router_priors(args, items, drafters, gammas):
    """router_hedgespec's prior of each stream position: the router's probabilities over the pool's
    drafters (specsel.study.routing), for the factored HedgeSpec."""
    from specsel.study.routing import load_study_router, router_folder, study_priors
    arms = [f"{d}@{g}" for d in drafters for g in sorted(set(gammas), reverse=True)] + ["autoregressive"]
    table = study_priors(load_study_router(router_folder(args.router, args.target, args.pool)),
                         [it.text for it in items], {"joint": {"arms": arms}}, drafters)["joint", "drafters"]
    return lambda spec: (lambda query: table[query]) if spec.learner == "router_hedgespec" else None


def load_command(args) -> int:
    from specsel.options import parse_csv, parse_ints
    from specsel.study.config import StudyError
    concurrency = parse_ints(args.concurrency, "--concurrency") if args.concurrency else []
    if any(c < 1 for c in concurrency):
        raise StudyError(f"--concurrency must be integers >= 1 (got {args.concurrency}); e.g. --concurrency 1,4,16, "
                         "or '' with --rates for open loops only")
    try:
        rates = [float(r) for r in parse_csv(args.rates)]
    except ValueError:
        raise StudyError(f"--rates takes comma-separated requests per second (got {args.rates!r})") from None
    if any(r <= 0 for r in rates) or not (concurrency or rates):
        raise StudyError("--rates must be > 0, and --concurrency or --rates must name at least one load")
    if args.chunk < 1 or args.tune_skip < 0 or args.tune_limit < 1:
        raise StudyError("--chunk and --tune-limit must be >= 1, --tune-skip >= 0")
    from specsel.core.runs import ROUTER_LEARNERS, STUDY_LEARNERS
    bad = [l for l in parse_csv(args.learners) if l not in STUDY_LEARNERS]
    if bad or not parse_csv(args.learners):
        raise StudyError(f"--learners: unknown {', '.join(bad) or '(none given)'}; choose from "
                         f"{', '.join(STUDY_LEARNERS)} ({', '.join(ROUTER_LEARNERS[1:])} comes with --router)")
    from specsel.data.user_domain import resolve_domains
    domains = resolve_domains(args.domains)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise StudyError(f"--out {out} is a file; pass a folder")
    if (out / "queries.jsonl").is_file() and not args.resume:
        raise StudyError(f"{out} already holds a load sweep; pass --resume to continue it, or choose another --out")
    return _run(args, domains, concurrency, rates, out)


def _run(args, domains, concurrency, rates, out: Path) -> int:
    if args.url:
        return _run_http(args, domains, concurrency, rates, out)
    import json

    import torch

    from specsel import SpecEngine
    from specsel.core.drafting import draft_calls
    from specsel.modeling.target import load_target
    from specsel.options import parse_csv, parse_ints
    from specsel.study import load_items, load_pool
    from specsel.study.load_plan import Baselines, load_points
    from specsel.study.load_run import LoadConfig, LoadDecoder, check_stamp, evaluate, tune
    from specsel.study.policies import PolicyFactory
    if args.threads:
        torch.set_num_threads(args.threads)
    target, tokenizer = load_target(args.target, dtype=args.dtype, device=args.device)
    pool = load_pool(target, parse_csv(args.drafters or DEFAULT_DRAFTERS), args.pool)
    drafters, gammas = list(pool), parse_ints(args.gammas, "--gammas")
    fixed = parse_csv(args.fixed) if args.fixed else [f"{d}@{g}" for d in drafters for g in sorted(set(gammas))]
    points = load_points(concurrency, rates, args.max_batch)
    learners = parse_csv(args.learners) + (["router_hedgespec"] if args.router else [])
    cfg = LoadConfig(points, drafters, gammas, fixed, learners, args.chunk, args.repeats,
                     args.max_new_tokens, args.seed,
                     extra={"target": args.target, "domains": args.domains, "skip": args.skip, "limit": args.limit})
    check_stamp(out, cfg.record(), args.resume)
    engine = SpecEngine(target, pool, eos_token_id=tokenizer.eos_token_id)
    decoder = LoadDecoder(engine, PolicyFactory(drafters, draft_calls(pool), seed=args.seed), args.max_new_tokens,
                          warm_gamma=max(gammas))
    tuned = Path(args.baselines) if args.baselines else out / "tuning" / "baselines.json"
    if tuned.is_file():
        cfg.baselines = Baselines.from_dict(json.loads(tuned.read_text()))
    else:
        tuning = load_items(tokenizer, domains, args.data_dir, args.tune_limit, args.seed, skip=args.tune_skip)
        cfg.baselines = tune(tuning, out, decoder, cfg, not args.no_progress)
    items = load_items(tokenizer, domains, args.data_dir, args.limit, args.seed, skip=args.skip)
    if args.router:
        decoder.factory.priors = router_priors(args, items, drafters, gammas)
    store = evaluate(items, out, decoder, cfg, not args.no_progress)
    return _report(args, store, cfg, out)


def _report(args, store, cfg, out: Path) -> int:
    """Summarize the stored lines, print and write the report, and --json; 1 if outputs differ."""
    import json

    from evaluators.load_report import write_load_report
    from evaluators.load_summary import summarize_load
    from evaluators.reliability import machine_summary
    from evaluators.timing import batch_times, time_split
    from specsel.study.load_run import chunk_size
    chunks = {p.name: chunk_size(cfg, p) for p in cfg.points}
    summary = summarize_load(store.lines, [p.name for p in cfg.points], chunks, args.repeats)
    split = time_split([store.lines])
    summary.update(kind="load", command="specsel " + " ".join(sys.argv[1:]), created=time.strftime("%Y-%m-%d %H:%M:%S"),
                   baselines=None if cfg.baselines is None else cfg.baselines.to_dict(),
                   machine=machine_summary(batch_times(store.lines)),
                   time_split={run: s for run, s in split.items() if "#" not in run}, config=cfg.record())
    print(write_load_report(summary, out))
    if args.json:
        keys = ("continuous_over_static_c4", "hedge_over_best_static", "hedge_over_best_single_static_geomean",
                "hedge_over_ar", "hedge_ttft_p99_over_ar", "lossless")
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({k: summary.get(k) for k in keys}, indent=1, default=str) + "\n")
    print(f"results in {out}/ (table.txt, summary.json/csv, plots, queries.jsonl)")
    lossless = (summary.get("lossless") or {}).get("lossless")
    return 0 if lossless in (True, None) else 1


def _run_http(args, domains, concurrency, rates, out: Path) -> int:
    """The sweep against a running server (specsel.study.load_http): its pool, its policy."""
    from specsel.modeling.tokenizer import load_tokenizer
    from specsel.options import parse_csv, parse_ints
    from specsel.study import load_items
    from specsel.study.config import StudyError
    from specsel.study.executor import RunSpec
    from specsel.study.load_http import SERVER, HttpLoadDecoder, server_info
    from specsel.study.load_plan import load_points, point_runs
    from specsel.study.load_run import LoadConfig, check_stamp, evaluate
    info = server_info(args.url)
    drafters = parse_csv(args.drafters) if args.drafters else list(info["pool"])
    missing = [d for d in drafters if d not in info["pool"]]
    if missing:
        raise StudyError(f"--drafters: the server has no {', '.join(missing)} (it has {', '.join(info['pool'])})")
    gammas = parse_ints(args.gammas, "--gammas")
    fixed = parse_csv(args.fixed) if args.fixed else [f"{d}@{g}" for d in drafters for g in sorted(set(gammas))]
    policy = str(info["policy"])
    cfg = LoadConfig(load_points(concurrency, rates, args.max_batch), drafters, gammas, fixed, [policy], args.chunk,
                     args.repeats, args.max_new_tokens, args.seed,
                     extra={"url": args.url, "target": args.target, "domains": args.domains, "skip": args.skip,
                            "limit": args.limit})
    check_stamp(out, cfg.record(), args.resume)
    tokenizer = load_tokenizer(args.target)          # the prompts' tokens only: no weights
    items = load_items(tokenizer, domains, args.data_dir, args.limit, args.seed, skip=args.skip)
    server = RunSpec("", SERVER, setting="joint", learner=policy)
    store = evaluate(items, out, HttpLoadDecoder(args.url, args.max_new_tokens, info), cfg, not args.no_progress,
                     lambda p: point_runs(p, drafters, gammas, fixed, None, ()) +
                     [replace(server, name=f"{p.name}/joint/{policy}")])
    return _report(args, store, cfg, out)
