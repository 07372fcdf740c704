"""Rows of a benchmark: the timed runs of one stream at one batch size, each against a baseline and
against the best of a set of reference runs, with every ratio taken batch by batch (evaluators.timing)
and judged (evaluators.reliability). The benchmarks (recipes/bench_*.py) print and store these rows.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from evaluators.lines import complete_lines
from evaluators.reliability import judge
from evaluators.timing import batch_times, paired_ratios, ratio_summary, run_tokens_per_s, spread


def mat_of(lines: Sequence[dict]) -> float | None:
    """Committed tokens per target round (MAT) over these query lines."""
    rounds = sum(len(l["records"]) for l in lines)
    return sum(r["committed"] for l in lines for r in l["records"]) / rounds if rounds else None


def versus(times: dict, run: str, reference: str | Sequence[str], bsz: int, repeats: int) -> dict | None:
    """`run`'s tokens/s over `reference`'s (over the fastest of several, batch by batch): the median
    of the per-batch ratios with min, max and count, and `unreliable` (the reason, or None)."""
    pairs = paired_ratios(times, run, reference, bsz, repeats)
    summary = ratio_summary(pairs)
    if summary is None:
        return None
    return {**summary, "unreliable": judge(times, [k for p in pairs for k in p.keys], pairs)}


def best_reference(times: dict, candidates: Sequence[str], baseline: str, bsz: int, repeats: int) -> str:
    """The candidate of highest median per-batch speedup over `baseline` (the baseline itself counts 1)."""
    def score(run: str) -> float:
        if run == baseline:
            return 1.0
        s = ratio_summary(paired_ratios(times, run, baseline, bsz, repeats))
        return s["median"] if s else 0.0
    return max(candidates, key=score)


def bench_rows(lines: Iterable[dict], runs: Sequence[str], bsz: int, repeats: int, baseline: str = "autoregressive",
               references: Sequence[str] = ()) -> tuple[list[dict], str | None]:
    """One row per run: tokens/s (median over repeats), MAT, and its ratio to `baseline` and to the
    best of `references` (chosen by median speedup over the baseline; None without references). Runs
    with no lines at this batch size are left out."""
    lines = [l for l in complete_lines(lines) if int(l["bsz"]) == bsz]
    times = batch_times(lines)
    best = best_reference(times, list(references), baseline, bsz, repeats) if references else None
    rows = []
    for run in runs:
        own = [l for l in lines if l["run"] == run]
        if not own:
            continue
        rows.append({"run": run, "bsz": bsz, "tokens_per_s": run_tokens_per_s(times, run, bsz, repeats),
                     "mat": mat_of(own), "queries": len(own),
                     "over_baseline": versus(times, run, baseline, bsz, repeats),
                     "over_best": versus(times, run, best, bsz, repeats) if best else None})
    return rows, best


def format_rows(rows: Sequence[dict], baseline: str = "autoregressive", best: str | None = None) -> str:
    """A fixed-width table of bench_rows: median (min-max) of the per-batch ratios; UNRELIABLE rows say so."""
    def cell(v: dict | None) -> str:
        if not v:
            return "-"
        return f"{v['median']:.3f} ({v['min']:.3f}-{v['max']:.3f})" + (" UNRELIABLE" if v["unreliable"] else "")
    head = f"{'run':34s} {'tok/s':>7s} {'MAT':>6s}  {'x ' + baseline:30s}" + (f"  x best ({best})" if best else "")
    out = [head, "-" * len(head)]
    for r in rows:
        tps = f"{r['tokens_per_s']:7.2f}" if r["tokens_per_s"] is not None else f"{'-':>7s}"
        mat = f"{r['mat']:6.3f}" if r["mat"] is not None else f"{'-':>6s}"
        out.append(f"{r['run']:34s} {tps} {mat}  {cell(r['over_baseline']):30s}"
                   + (f"  {cell(r['over_best'])}" if best else ""))
    reasons = {r["run"]: v["unreliable"] for r in rows for v in (r["over_baseline"], r["over_best"])
               if v and v["unreliable"]}
    out += [f"  UNRELIABLE {run}: {why}" for run, why in reasons.items()]
    return "\n".join(out)


__all__ = ["bench_rows", "best_reference", "format_rows", "mat_of", "spread", "versus"]
