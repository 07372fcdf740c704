"""How a disturbed machine shows in the executor's readings: the thresholds of evaluators.reliability.

    python recipes/bench_timing.py --data-dir ../shared/data --threads 2

Decodes the same small plan (plain decoding, ngram@4 and eagle@2, --repeats interleaved, greedy) twice
through the one executor: once on the machine as it is (run it on an idle machine), once with a busy
process spinning on one core the whole time. For every timed batch it prints, per state, the
distribution of the two readings the reliability rules use (evaluators.reliability):

    wait share     the share of its threads' time the run waited for a CPU (run-queue delay)
    others share   other processes' share of the CPUs (tick-counted)

and the spread of each run's per-batch ratio to plain decoding between repeats, with how each
speedup moved. The limits (WAIT_LIMIT, OTHERS_LIMIT, SPREAD_LIMIT) sit between the idle and the busy
readings; this is the measurement that shows it. --json writes the distributions.
"""
from __future__ import annotations

import sys
import time

from specsel.flags import add_flags, flag_parser, one_int, parse_flags, run_command

ARMS = ("autoregressive", "ngram@4", "eagle@2")


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def quantiles(values) -> dict:
    v = sorted(x for x in values if x is not None)
    if not v:
        return {}
    pick = lambda q: v[min(len(v) - 1, int(q * len(v)))]      # noqa: E731
    return {"n": len(v), "min": v[0], "p50": pick(0.5), "p90": pick(0.9), "max": v[-1]}


def readings(lines, repeats: int, bsz: int) -> dict:
    """The distributions of one state's timed batches."""
    from evaluators.reliability import others_share, repeat_spread, wait_share
    from evaluators.timing import batch_times, paired_ratios, ratio_summary
    times = batch_times(lines)
    machines = [t.machine for t in times.values() if t.machine]
    speed = {}
    for arm in ARMS[1:]:
        pairs = paired_ratios(times, f"fixed/{arm}", "autoregressive", bsz, repeats)
        speed[arm] = {**(ratio_summary(pairs) or {}), "repeat_spread": repeat_spread(pairs)}
    return {"wait_share": quantiles(wait_share(m) for m in machines),
            "others_share": quantiles(others_share(m) for m in machines if m["wall_s"] * m["cpus"] >= 1.0),
            "speedup": speed}


def main(argv=None) -> int:
    ap = flag_parser("bench_timing", __doc__)
    add_flags(ap, "target", "data_dir", "domains", "skip", "limit", "bsz", "max_new_tokens", "repeats", "threads",
              "out", "json", "no_progress", skip=40, limit=2, max_new_tokens=32, repeats=2, threads=2,
              out="results/bench_timing")
    args = parse_flags(ap, argv)
    import multiprocessing
    from pathlib import Path

    import torch

    from specsel import SpecEngine
    from specsel.data import domains_argument
    from specsel.modeling.target import load_target
    from specsel.study import Executor, Phase, ResultStore, RunSpec, load_items, load_pool
    from specsel.study.decoding import EngineDecoder
    from specsel.study.policies import PolicyFactory
    torch.set_num_threads(args.threads)
    bsz = one_int(args, "bsz")
    target, tokenizer = load_target(args.target)
    pool = load_pool(target, ["ngram", "eagle"])
    items = load_items(tokenizer, domains_argument(ap, args.domains), args.data_dir, args.limit, skip=args.skip)
    runs = tuple(RunSpec("autoregressive" if a == "autoregressive" else f"fixed/{a}",
                         "autoregressive" if a == "autoregressive" else "fixed", arm=a) for a in ARMS)
    decoder = EngineDecoder(SpecEngine(target, pool, eos_token_id=tokenizer.eos_token_id), PolicyFactory(list(pool)),
                            args.max_new_tokens)
    result = {}
    for state in ("idle", "busy"):
        spinner = None
        if state == "busy":
            spinner = multiprocessing.get_context("spawn").Process(target=_spin, args=(24 * 3600.0,), daemon=True)
            spinner.start()
        try:
            store = ResultStore(Path(args.out) / state / "queries.jsonl", resume=True)
            Executor(items, store, decoder, progress=not args.no_progress).execute(Phase(bsz, runs, args.repeats))
        finally:
            if spinner is not None:
                spinner.terminate()
        result[state] = readings(store.lines, args.repeats, bsz)
        print(f"{state}: wait share {fmt(result[state]['wait_share'])}; others share "
              f"{fmt(result[state]['others_share'])}")
        for arm, s in result[state]["speedup"].items():
            print(f"  {arm}: speedup {s.get('median', float('nan')):.3f} ({s.get('min', 0):.3f}-{s.get('max', 0):.3f}),"
                  f" widest spread between repeats {s['repeat_spread'] or 0:.0%}")
    return write(result, args)


def fmt(q: dict) -> str:
    return "-" if not q else f"p50 {q['p50']:.1%}, p90 {q['p90']:.1%}, max {q['max']:.1%} over {q['n']} batches"


def write(result: dict, args) -> int:
    import json
    from pathlib import Path

    from evaluators.reliability import OTHERS_LIMIT, SPREAD_LIMIT, WAIT_LIMIT
    out = {"kind": "bench_timing", "command": "python recipes/bench_timing.py " + " ".join(sys.argv[1:]),
           "created": time.strftime("%Y-%m-%d %H:%M:%S"), "limits": {"wait": WAIT_LIMIT, "others": OTHERS_LIMIT,
                                                                    "spread": SPREAD_LIMIT}, **result}
    for path in [Path(args.out) / "summary.json", *([Path(args.json)] if args.json else [])]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "bench_timing"))
