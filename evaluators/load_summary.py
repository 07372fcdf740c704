"""The load study's numbers from its query lines (records in): per point and policy, throughput,
latency percentiles, speculation counters, every drafter's counterfactual acceptance; the ratios
the throughput-under-load targets are about, each judged (evaluators.reliability).

Names follow vLLM's benchmark_serving where it has them: ttft, tpot, itl, e2el (milliseconds;
p50/p90/p99), output_throughput (tokens/s), request_throughput (requests/s), num_drafts,
num_draft_tokens, num_accepted_tokens, acceptance per draft position. A run's name is its load
point's and its policy's: ``c4/joint/hedgespec`` (specsel.study.load_plan).
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable, Mapping, Sequence

import numpy as np

from evaluators.lines import complete_lines
from evaluators.reliability import judge
from evaluators.timing import batch_times, paired_ratios, ratio_summary, run_tokens_per_s

AR = "autoregressive"
STATIC = ("autoregressive", "fixed/", "joint/dynamic_gamma", "joint/rule", "joint/table")   # policies that never learn
HEDGE = "joint/hedgespec"


def is_static(policy: str) -> bool:
    return policy == AR or any(policy.startswith(p) for p in STATIC[1:])


def _pct(values: Sequence[float]) -> dict:
    if not values:
        return {"p50": None, "p90": None, "p99": None, "mean": None}
    v = np.asarray(values, dtype=float) * 1000.0
    return {"p50": float(np.percentile(v, 50)), "p90": float(np.percentile(v, 90)),
            "p99": float(np.percentile(v, 99)), "mean": float(v.mean())}


def latencies(lines: Iterable[dict], closed: bool = False) -> dict:
    """TTFT, TPOT, ITL and end-to-end latency percentiles (ms) over the requests of `lines`. A request
    counts from when it was sent: its arrival in an open loop; in a closed loop, when a slot freed and
    it was admitted (the client of benchmark_serving --max-concurrency sends only then)."""
    ttft, tpot, itl, e2el = [], [], [], []
    for l in lines:
        t = l.get("request")
        if not t or t.get("finish_s") is None:
            continue
        sent = t["admitted_s"] if closed and t.get("admitted_s") is not None else t["arrival_s"]
        ttft.append(t["first_token_s"] - sent)
        e2el.append(t["finish_s"] - sent)
        if len(l["tokens"]) > 1:
            tpot.append((t["finish_s"] - t["first_token_s"]) / (len(l["tokens"]) - 1))
        times = [r["time_s"] for r in l["records"] if r.get("time_s") is not None]
        itl += [b - a for a, b in zip(times, times[1:])]
    return {"ttft_ms": _pct(ttft), "tpot_ms": _pct(tpot), "itl_ms": _pct(itl), "e2el_ms": _pct(e2el)}


def speculation(lines: Iterable[dict]) -> dict:
    """num_drafts, num_draft_tokens, num_accepted_tokens, acceptance per draft position, MAT, and each
    scored drafter's counterfactual acceptance (mean over every committed position it was scored at)."""
    drafts = drafted = accepted = rounds = committed = 0
    reach, hits = defaultdict(int), defaultdict(int)
    scored = defaultdict(list)
    for l in lines:
        for r in l["records"]:
            rounds, committed = rounds + 1, committed + r["committed"]
            if r["drafted"]:
                drafts, drafted, accepted = drafts + 1, drafted + r["drafted"], accepted + r["accepted"]
                for i in range(r["drafted"]):
                    reach[i] += 1
                    hits[i] += i < r["accepted"]
            for d, values in (r.get("position_acceptance") or {}).items():
                scored[d] += values
    return {"num_drafts": drafts, "num_draft_tokens": drafted, "num_accepted_tokens": accepted,
            "acceptance_per_position": [hits[i] / reach[i] for i in sorted(reach)],
            "mat": committed / rounds if rounds else None,
            "counterfactual_acceptance": {d: float(np.mean(v)) for d, v in scored.items() if v}}


def _times(lines: Sequence[dict], point: str, bsz: int) -> dict:
    return {k: t for k, t in batch_times(lines).items() if k[0].startswith(point + "/") and k[1] == bsz}


def point_speedups(lines: Iterable[dict], points, chunks: Mapping[str, int], fixed: Sequence[str]) -> dict:
    """{fixed arm: {concurrency: median per-batch tokens/s over plain decoding}} of a tuning sweep."""
    lines = complete_lines(lines)
    out: dict = {}
    for p in points:
        times = _times(lines, p.name, chunks[p.name])
        for arm in fixed:
            s = ratio_summary(paired_ratios(times, f"{p.name}/fixed/{arm}", f"{p.name}/{AR}", chunks[p.name]))
            if s is not None:
                out.setdefault(arm, {})[p.concurrency] = s["median"]
    return out


def best_fixed_at(lines: Iterable[dict], point: str, bsz: int, fixed: Sequence[str], repeats: int) -> str | None:
    """The fixed arm of highest median per-batch speedup over plain decoding at `point`."""
    times = _times(complete_lines(lines), point, bsz)
    score = {a: s["median"] for a in fixed
             if (s := ratio_summary(paired_ratios(times, f"{point}/fixed/{a}", f"{point}/{AR}", bsz, repeats)))}
    return max(score, key=score.get) if score else None


def versus(times: dict, run: str, ref: str | Sequence[str], bsz: int, repeats: int) -> dict | None:
    pairs = paired_ratios(times, run, ref, bsz, repeats)
    s = ratio_summary(pairs)
    return None if s is None else {**s, "unreliable": judge(times, [k for p in pairs for k in p.keys], pairs)}


def point_rows(lines: Sequence[dict], point: str, bsz: int, repeats: int) -> list[dict]:
    """One row per policy at a point: throughput, latencies, speculation, its ratio to plain decoding."""
    times = _times(lines, point, bsz)
    own = defaultdict(list)
    for l in lines:
        if l["run"].startswith(point + "/") and l["bsz"] == bsz and "#" not in l["run"]:
            own[l["run"][len(point) + 1:]].append(l)
    rows = []
    for policy, ls in own.items():
        run = f"{point}/{policy}"
        tps = run_tokens_per_s(times, run, bsz, repeats)
        wall = sum(t.wall_s for k, t in times.items() if k[0] == run)
        rows.append({"point": point, "policy": policy, "output_throughput": tps,
                     "request_throughput": len(ls) / wall if wall else None, "requests": len(ls),
                     **latencies(ls, closed=point.startswith("c")), **speculation(ls),
                     "over_ar": versus(times, run, f"{point}/{AR}", bsz, repeats)})
    return rows


def geomean(values: Sequence[float]) -> float | None:
    return math.exp(sum(map(math.log, values)) / len(values)) if values and all(v > 0 for v in values) else None


def _key(point: str) -> str:
    """A closed-loop point by its concurrency ("4"), an open-loop one by its name ("r0.5")."""
    return point[1:] if point.startswith("c") else point


def summarize_load(lines: Iterable[dict], points: Sequence[str], chunks: Mapping[str, int], repeats: int,
                   greedy: bool = True) -> dict:
    """Rows of every point and policy, and the targets' ratios (medians of per-batch ratios, each with
    its spread and `unreliable`): continuous_over_static_c4, hedge_over_best_static, hedge_over_ar,
    hedge_ttft_p99_over_ar (by concurrency), hedge_over_best_single_static_geomean, lossless."""
    lines = complete_lines(lines)
    rows = [r for p in points for r in point_rows(lines, p, chunks[p], repeats)]
    out: dict = {"rows": rows, "hedge_over_best_static": {}, "hedge_over_ar": {}, "hedge_ttft_p99_over_ar": {},
                 "best_static": {}}
    statics = {}
    for p in points:
        times, bsz = _times(lines, p, chunks[p]), chunks[p]
        here = {r["policy"]: r for r in rows if r["point"] == p}
        static = {pol: (1.0 if pol == AR else (r["over_ar"] or {}).get("median") or 0.0) for pol, r in here.items()
                  if is_static(pol)}
        statics[p] = static
        if HEDGE not in here or not static:
            continue
        best = max(static, key=static.get)
        out["best_static"][_key(p)] = best
        out["hedge_over_best_static"][_key(p)] = versus(times, f"{p}/{HEDGE}", f"{p}/{best}", bsz, repeats)
        out["hedge_over_ar"][_key(p)] = here[HEDGE]["over_ar"]
        ar_p99, hedge_p99 = here[AR]["ttft_ms"]["p99"], here[HEDGE]["ttft_ms"]["p99"]
        out["hedge_ttft_p99_over_ar"][_key(p)] = hedge_p99 / ar_p99 if ar_p99 and hedge_p99 is not None else None
    out["hedge_over_best_single_static_geomean"] = _single_static(lines, points, chunks, repeats, statics)
    if "c4" in points:
        times = _times(lines, "c4", chunks["c4"])
        static_runs = {k[0] for k in times if k[0].startswith("c4/static/")}
        arm = sorted(static_runs)[0].split("/static/")[1] if static_runs else None
        out["continuous_over_static_c4"] = None if arm is None else \
            {**versus(times, f"c4/fixed/{arm}", f"c4/static/{arm}", chunks["c4"], repeats), "arm": arm}
    out["lossless"] = _lossless(lines) if greedy else None
    return out


def _single_static(lines, points, chunks, repeats, statics) -> dict | None:
    """HedgeSpec over the strongest single static policy (one configuration for every load): for each
    static policy run at every point, the geometric mean over the points of HedgeSpec's median per-batch
    ratio to it; the strongest is the one HedgeSpec beats least."""
    common = set.intersection(*(set(s) for s in statics.values())) if statics else set()
    best, best_g, detail = None, None, {}
    for pol in sorted(common):
        per_point = {}
        for p in points:
            v = versus(_times(lines, p, chunks[p]), f"{p}/{HEDGE}", f"{p}/{pol}", chunks[p], repeats)
            if v is not None:
                per_point[_key(p)] = v
        g = geomean([v["median"] for v in per_point.values()])
        if g is not None and len(per_point) == len(points) and (best_g is None or g < best_g):
            best, best_g, detail = pol, g, per_point
    if best is None:
        return None
    unreliable = "; ".join(f"{k}: {v['unreliable']}" for k, v in detail.items() if v["unreliable"]) or None
    return {"median": best_g, "policy": best, "by_point": {k: v["median"] for k, v in detail.items()},
            "unreliable": unreliable}


def _lossless(lines: Sequence[dict]) -> dict:
    """Every greedy output equals plain decoding's output of the same query (at any load)."""
    reference = {l["qid"]: l["tokens"] for l in lines if l["run"].endswith("/" + AR)}
    checked = [l for l in lines if l["qid"] in reference]
    bad = [{"run": l["run"], "qid": l["qid"]} for l in checked if l["tokens"] != reference[l["qid"]]]
    return {"lossless": not bad and bool(checked), "checked": len(checked), "mismatches": bad[:20]}
