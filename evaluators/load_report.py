"""The load study's outputs: the table with the targets' verdicts, summary.csv/json and the plots
(throughput against concurrency per policy; p50 and p99 TPOT against throughput). Records in."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from evaluators.report import machine_line

# the throughput-under-load targets: (key, >= or <=, bound); a ratio keyed by concurrency is judged at each
TARGETS = (("continuous_over_static_c4", ">=", 1.25), ("hedge_over_best_static", ">=", 0.97),
           ("hedge_over_best_single_static_geomean", ">=", 1.10), ("hedge_over_ar", ">=", 0.98),
           ("hedge_ttft_p99_over_ar", "<=", 1.2))
MOONSHOT = ("hedge_over_ar", "1", ">=", 1.5)


def _ratio(v) -> tuple[float | None, str | None]:
    """(median, the reason it is unreliable) of a ratio entry (a summary dict, or a plain float)."""
    if v is None:
        return None, None
    if isinstance(v, dict):
        return v.get("median"), v.get("unreliable")
    return float(v), None


def verdicts(summary: dict) -> list[dict]:
    """One verdict per target (per concurrency where keyed by it): met, not met, or not judged
    (timing unreliable), with the measured median."""
    out = []

    def judge(name, where, value, op, bound):
        median, why = _ratio(value)
        if median is None:
            return
        met = None if why else (median >= bound if op == ">=" else median <= bound)
        out.append({"target": name, "at": where, "value": median, "required": f"{op} {bound}", "met": met,
                    **({"not_judged": f"timing unreliable: {why}"} if why else {})})
    for name, op, bound in TARGETS:
        value = summary.get(name)
        if isinstance(value, dict) and "median" not in value:
            for where, v in value.items():
                judge(name, where, v, op, bound)
        else:
            judge(name, None, value, op, bound)
    name, where, op, bound = MOONSHOT
    judge("moonshot: " + name, where, (summary.get(name) or {}).get(where), op, bound)
    return out


def _cell(v) -> str:
    if not v:
        return "-"
    return f"{v['median']:.3f} ({v['min']:.3f}-{v['max']:.3f})" + (" UNRELIABLE" if v.get("unreliable") else "")


def format_load_table(summary: dict) -> str:
    head = (f"{'point':6s} {'policy':28s} {'tok/s':>7s} {'req/s':>6s} {'MAT':>5s} {'TTFT p50/p99 ms':>17s} "
            f"{'TPOT p50/p99 ms':>16s}  x autoregressive")
    lines = [head, "-" * len(head)]
    for r in summary["rows"]:
        f = lambda v, s="{:.2f}": "-" if v is None else s.format(v)     # noqa: E731
        lines.append(f"{r['point']:6s} {r['policy']:28s} {f(r['output_throughput']):>7s} "
                     f"{f(r['request_throughput'], '{:.3f}'):>6s} {f(r['mat'], '{:.2f}'):>5s} "
                     f"{f(r['ttft_ms']['p50'], '{:.0f}') + '/' + f(r['ttft_ms']['p99'], '{:.0f}'):>17s} "
                     f"{f(r['tpot_ms']['p50'], '{:.0f}') + '/' + f(r['tpot_ms']['p99'], '{:.0f}'):>16s}  "
                     f"{_cell(r['over_ar'])}")
    lines.append("")
    for v in verdicts(summary):
        state = f"not judged ({v['not_judged']})" if v["met"] is None else "met" if v["met"] else "NOT met"
        at = f" at {v['at']}" if v["at"] is not None else ""
        lines.append(f"* target {v['target']}{at} = {v['value']:.3f} ({v['required']}: {state})")
    if summary.get("best_static"):
        best = ", ".join(f"{k}: {v}" for k, v in summary["best_static"].items())
        lines.append(f"* best static policy by load point: {best}")
    if summary.get("machine"):
        lines.append(f"* machine: {machine_line(summary['machine'])}")
    ll = summary.get("lossless") or {}
    lines.append(f"* lossless: {ll.get('lossless')} ({ll.get('checked', 0)} outputs compared with plain decoding)"
                 if ll else "* lossless: not checked (sampling)")
    return "\n".join(lines)


def write_load_report(summary: dict, out: Path, plots: bool = True) -> str:
    """table.txt, summary.json, summary.csv and the plots; returns the table."""
    out.mkdir(parents=True, exist_ok=True)
    text = format_load_table(summary)
    (out / "table.txt").write_text(text + "\n")
    (out / "summary.json").write_text(json.dumps({**summary, "targets": verdicts(summary)}, indent=1,
                                                 default=str) + "\n")
    with (out / "summary.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["point", "policy", "output_throughput", "request_throughput", "mat", "ttft_p50_ms", "ttft_p99_ms",
                    "tpot_p50_ms", "tpot_p99_ms", "itl_p50_ms", "e2el_p99_ms", "num_drafts", "num_draft_tokens",
                    "num_accepted_tokens", "over_ar", "over_ar_min", "over_ar_max", "unreliable"])
        for r in summary["rows"]:
            v = r["over_ar"] or {}
            w.writerow([r["point"], r["policy"], r["output_throughput"], r["request_throughput"], r["mat"],
                        r["ttft_ms"]["p50"], r["ttft_ms"]["p99"], r["tpot_ms"]["p50"], r["tpot_ms"]["p99"],
                        r["itl_ms"]["p50"], r["e2el_ms"]["p99"], r["num_drafts"], r["num_draft_tokens"],
                        r["num_accepted_tokens"], v.get("median"), v.get("min"), v.get("max"),
                        v.get("unreliable") or ""])
    if plots:
        plot_load(summary, out)
    return text


def _save(fig, labels: tuple[str, str, str], legend_size: int, path: Path) -> None:
    """Label the figure's axes (x, y, title), add its grid and legend, write it to `path`, close it."""
    import matplotlib.pyplot as plt
    ax = fig.axes[0]
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title(labels[2])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_load(summary: dict, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = summary["rows"]
    policies = list(dict.fromkeys(r["policy"] for r in rows if not r["policy"].startswith("static/")))
    closed = [r for r in rows if r["point"].startswith("c")]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for pol in policies:
        pts = sorted((int(r["point"][1:]), r["output_throughput"]) for r in closed
                     if r["policy"] == pol and r["output_throughput"])
        if pts:
            ax.plot(*zip(*pts), marker="o", lw=2.5 if pol == "joint/hedgespec" else 1.2, label=pol)
    ax.set_xscale("log", base=2)
    _save(fig, ("concurrency (requests in flight)", "output tokens/s", "throughput under load"), 7,
          out / "throughput_vs_concurrency.png")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for pol in policies:
        pts = sorted((r["output_throughput"], r["tpot_ms"]["p50"], r["tpot_ms"]["p99"]) for r in rows
                     if r["policy"] == pol and r["output_throughput"] and r["tpot_ms"]["p50"] is not None)
        if pts:
            x, p50, p99 = zip(*pts)
            line, = ax.plot(x, p50, marker="o", label=f"{pol} p50")
            ax.plot(x, p99, marker="x", ls="--", color=line.get_color(), label=f"{pol} p99")
    _save(fig, ("output tokens/s", "TPOT (ms)", "time per output token against throughput"), 6,
          out / "tpot_vs_throughput.png")
