"""Serving over HTTP against the same requests decoded in this process (the server's targets).

    python recipes/bench_serve.py --data-dir ../shared/data --threads 2

Starts two `specsel serve` processes on this machine, at most the largest --concurrency running in
each: the joint HedgeSpec over --drafters x --gammas and plain decoding (--port), and the fixed
--arm (--port + 1: the transport's cost alone, with bandit feedback as in process, no drafter
scored beside it). It then decodes the same chunks of
the load stream two ways through the one executor, interleaved batch by batch, --repeats times:
in this process (the load study's continuous batching at the point, the same policy) and over
HTTP (the decoder of `specsel load --url`). Only one side decodes at a time. At each concurrency
it prints output tokens/s over HTTP / in process (the median of per-batch ratios, with min-max,
judged like every speed figure: the server counts as this run's process), the added TTFT (the
median over queries and repeats of each one's TTFT over HTTP minus in process), and whether every
output matched. --json writes them.
"""
from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from specsel.flags import add_flags, flag_parser, parse_flags, run_command


class Both:
    """The executor's Decoder for two kinds of run: in process, and over HTTP to the policy's server
    (`http`) or to the fixed arm's (`fixed`, runs named .../http/<arm>)."""

    def __init__(self, local, http, fixed):
        self.local, self.http, self.fixed = local, http, fixed

    @property
    def point(self):
        return self.local.point

    @point.setter
    def point(self, value):
        self.local.point = self.http.point = self.fixed.point = value

    def warm_up(self, prompt):
        for side in (self.local, self.http, self.fixed):
            side.warm_up(prompt)

    def processes(self):
        return self.http.processes() + self.fixed.processes()

    def _side(self, spec):
        if "/http/" not in spec.name:
            return self.local
        return self.http if spec.name.endswith("/http/hedgespec") else self.fixed

    def policy(self, spec, bsz):
        return self._side(spec).policy(spec, bsz)

    def decode(self, spec, policy, prompts, seed):
        return self._side(spec).decode(spec, policy, prompts, seed)


def start_server(args, port: int, policy: str = "hedgespec") -> subprocess.Popen:
    import httpx
    cmd = [sys.executable, "-m", "specsel", "serve", "--target", args.target, "--drafters", args.drafters,
           "--gammas", args.gammas, "--max-batch", str(max(args.concurrency)), "--port", str(port),
           "--policy", policy]
    cmd += ["--threads", str(args.threads)] if args.threads else []
    proc = subprocess.Popen(cmd)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise OSError("specsel serve did not come up; run it by hand to see why")


def paired_ttft_ms(lines, local: str, http: str) -> list[float]:
    """Per query and repeat: its TTFT over HTTP minus in process (each from its admission), in ms.
    Their median is the added TTFT: the p50s of the two sides differ also by which queries' prefills
    land where, which the pairing cancels."""
    ttft = {}
    for line in lines:
        base, _, repeat = line["run"].partition("#")
        r = line.get("request") or {}
        if base in (local, http) and r.get("first_token_s") is not None:
            ttft[(base, line["qid"], repeat)] = 1e3 * (r["first_token_s"] - r["admitted_s"])
    return [ttft[(http, q, k)] - v for (side, q, k), v in ttft.items() if side == local and (http, q, k) in ttft]


def figures(lines, points, chunks: dict, repeats: int, policy: str = "hedgespec") -> dict:
    from evaluators.load_summary import latencies
    from evaluators.reliability import judge
    from evaluators.timing import batch_times, paired_ratios, ratio_summary
    times, out = batch_times(lines), {}
    for p in points:
        local, http = f"{p}/inproc/{policy}", f"{p}/http/{policy}"
        pairs = paired_ratios(times, http, local, chunks[p], repeats)
        ttft = {side: latencies([l for l in lines if l["run"] == side], closed=True)["ttft_ms"]["p50"]
                for side in (local, http)}
        same = {l["qid"]: l["tokens"] for l in lines if l["run"] == local}
        mat = {}
        for side in (local, http):
            recs = [r for l in lines if l["run"].partition("#")[0] == side for r in l["records"]]
            mat[side] = sum(r["committed"] for r in recs) / len(recs) if recs else None
        added = paired_ttft_ms(lines, local, http)
        out[p] = {"http_over_inprocess": {**(ratio_summary(pairs) or {}),
                                          "unreliable": judge(times, [k for q in pairs for k in q.keys], pairs)},
                  "ttft_p50_ms": ttft, "mat": mat,
                  "added_ttft_ms": statistics.median(added) if added else None,
                  "added_ttft_ms_range": [min(added), max(added)] if added else None,
                  "outputs_equal": all(same.get(l["qid"]) == l["tokens"] for l in lines if l["run"] == http)}
    return out


def main(argv=None) -> int:
    ap = flag_parser("bench_serve", __doc__)
    add_flags(ap, "target", "data_dir", "domains", "skip", "limit", "drafters", "gammas", "concurrency",
              "max_new_tokens", "repeats", "threads", "seed", "out", "json", "no_progress",
              domains="math,humaneval,medqa,alpaca,summarization", skip=50, limit=4, drafters="ngram,eagle",
              concurrency="1,4", max_new_tokens=32, repeats=3, threads=2, out="results/bench_serve")
    ap.add_argument("--port", type=int, default=8765, help="port of the server this bench starts")
    ap.add_argument("--arm", default="ngram@2", help="the fixed arm also decoded both ways (over HTTP by a server "
                    "of that arm, on --port + 1): the transport's cost without the learners' differences")
    args = parse_flags(ap, argv)
    return run_command(lambda: _bench(args), "bench_serve")


def _bench(args) -> int:
    import torch

    from specsel import SpecEngine
    from specsel.core.drafting import draft_calls
    from specsel.data.user_domain import resolve_domains
    from specsel.modeling.target import load_target
    from specsel.options import parse_csv, parse_ints
    from specsel.study import load_items, load_pool
    from specsel.study.executor import Executor, Phase, RunSpec
    from specsel.study.load_http import SERVER, HttpLoadDecoder, server_info
    from specsel.study.load_plan import LoadPoint
    from specsel.study.load_run import LoadDecoder
    from specsel.study.policies import PolicyFactory
    from specsel.study.store import ResultStore
    args.concurrency = parse_ints(args.concurrency, "--concurrency") if isinstance(args.concurrency, str) \
        else list(args.concurrency)
    gammas = parse_ints(args.gammas, "--gammas") if isinstance(args.gammas, str) else list(args.gammas)
    args.gammas = ",".join(map(str, gammas))
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    if (out / "queries.jsonl").exists():
        raise ValueError(f"{out} already holds a run; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    target, tokenizer = load_target(args.target)
    pool = load_pool(target, parse_csv(args.drafters))
    drafters = list(pool)
    items = load_items(tokenizer, resolve_domains(args.domains), args.data_dir, args.limit, args.seed, skip=args.skip)
    url, url_fixed = f"http://127.0.0.1:{args.port}", f"http://127.0.0.1:{args.port + 1}"
    servers = [start_server(args, args.port), start_server(args, args.port + 1, args.arm)]
    try:
        info = server_info(url)
        local = LoadDecoder(SpecEngine(target, pool, eos_token_id=tokenizer.eos_token_id),
                            PolicyFactory(drafters, draft_calls(pool), seed=args.seed), args.max_new_tokens,
                            warm_gamma=max(gammas))
        decoder = Both(local, HttpLoadDecoder(url, args.max_new_tokens, info),
                       HttpLoadDecoder(url_fixed, args.max_new_tokens, server_info(url_fixed)))
        joint = tuple(f"{d}@{g}" for d in drafters for g in sorted(set(gammas), reverse=True)) + ("autoregressive",)
        store = ResultStore(out / "queries.jsonl", resume=False)
        executor = Executor(items, store, decoder, seed=args.seed, progress=not args.no_progress)
        chunks = {}
        for c in args.concurrency:
            decoder.point = LoadPoint(concurrency=c)
            chunks[f"c{c}"] = max(8, 4 * c)
            runs = (RunSpec(f"c{c}/inproc/hedgespec", "factored", setting="joint", learner="hedgespec", arms=joint,
                            gammas=tuple(gammas)),
                    RunSpec(f"c{c}/http/hedgespec", SERVER, setting="joint", learner="hedgespec"),
                    RunSpec(f"c{c}/inproc/{args.arm}", "fixed", arm=args.arm),     # the transport alone:
                    RunSpec(f"c{c}/http/{args.arm}", "fixed", arm=args.arm))       # one arm, its own server
            executor.execute(Phase(chunks[f"c{c}"], runs, args.repeats, f"c{c}: in process and over HTTP"))
    finally:
        for server in servers:
            server.send_signal(signal.SIGTERM)
        for server in servers:
            server.wait(120)
    from evaluators.reliability import machine_summary
    from evaluators.timing import batch_times
    result = {"kind": "bench_serve", "command": "python recipes/bench_serve.py " + " ".join(sys.argv[1:]),
              "created": time.strftime("%Y-%m-%d %H:%M:%S"),
              "points": figures(store.lines, list(chunks), chunks, args.repeats),
              "fixed_arm": args.arm, "points_fixed": figures(store.lines, list(chunks), chunks, args.repeats, args.arm),
              "machine": machine_summary(batch_times(store.lines))}
    for p, f in [*result["points"].items(), *((f"{k} {args.arm}", v) for k, v in result["points_fixed"].items())]:
        r = f["http_over_inprocess"]
        mark = f" UNRELIABLE ({r['unreliable']})" if r.get("unreliable") else ""
        print(f"{p}: tokens/s over HTTP / in process {r.get('median', float('nan')):.3f} "
              f"({r.get('min', float('nan')):.3f}-{r.get('max', float('nan')):.3f}, n={r.get('n', 0)}){mark}; "
              f"TTFT p50 {f['ttft_p50_ms']}, added (median of per-query differences) {f['added_ttft_ms']} ms "
              f"(range {f['added_ttft_ms_range']}); MAT {f['mat']}; "
              f"outputs equal: {f['outputs_equal']}")
    (out / "summary.json").write_text(json.dumps(result, indent=1) + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
