"""Study outputs: the printed table, summary.csv/json, lossless.json and the PNG plots.

    write_report(summary, out_dir, regret_curve=None) -> table text

Input is ``evaluators.summary.summarize_study``'s dict (records in, never models).
"""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Sequence

from evaluators.columns import EXTRA_COLUMNS, ROW_ORDER, SUMMARY_COLUMNS

TABLE_COLUMNS = (("setting", "setting", "{}"), ("domain", "domain", "{}"), ("bsz", "bsz", "{}"),
                 ("learner", "learner", "{}"), ("arm", "arm", "{}"), ("mat", "MAT", "{:.3f}"),
                 ("tokens_per_s", "tokens/s", "{:.2f}"), ("speedup", "speedup", "{:.2f}x"),
                 ("regret", "regret", "{:.2f}"), ("pct_oracle", "% oracle", "{:.1f}"),
                 ("lossless", "lossless", "{}"), ("unreliable", "timing", "{}"))


def _fmt(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    return spec.format(value)


def format_table(rows: Sequence[dict], max_arm: int = 28) -> str:
    """Fixed-width text table, one line per row (BanditSpec's columns plus % of oracle and lossless)."""
    cells = [[h for _, h, _ in TABLE_COLUMNS]]
    for r in rows:
        line = []
        for key, _, spec in TABLE_COLUMNS:
            text = _fmt(r.get(key), spec)
            if key == "speedup" and (r.get("speedup_n") or 1) > 1:     # median (min-max) of the per-batch ratios
                text += f" ({r['speedup_min']:.2f}-{r['speedup_max']:.2f})"
            if key == "unreliable":
                text = "" if r.get("tokens_per_s") is None else "UNRELIABLE" if r.get("unreliable") else "ok"
            if key == "arm" and len(text) > max_arm:
                text = text[: max_arm - 3] + "..."
            line.append(text)
        cells.append(line)
    widths = [max(len(c[i]) for c in cells) for i in range(len(TABLE_COLUMNS))]
    right = {"bsz", "mat", "tokens_per_s", "speedup", "regret", "pct_oracle"}
    out = []
    for k, line in enumerate(cells):
        out.append("  ".join(c.rjust(w) if TABLE_COLUMNS[i][0] in right else c.ljust(w)
                             for i, (c, w) in enumerate(zip(line, widths))).rstrip())
        if k == 0:
            out.append("-" * len(out[0]))
    return "\n".join(out)


def sort_rows(rows: Sequence[dict], domain_first: str = "mixed") -> list[dict]:
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    domains = list(dict.fromkeys(r["domain"] for r in rows))
    rank = {name: i for i, name in enumerate(ROW_ORDER)}
    return sorted(rows, key=lambda r: (settings.index(r["setting"]), r["domain"] != domain_first,
                                       domains.index(r["domain"]), r["bsz"], rank.get(r["learner"], 99)))


def footnotes(summary: dict) -> list[str]:
    notes = [
        "MAT: committed tokens per target forward (bonus included). tokens/s and speedup are measured live, end "
        "to end (prefill included; summary.csv has decode_tokens_per_s without it); a batch's wall time cannot be "
        "split, so per-domain rows have them only at bsz 1. speedup: the median (min-max) over batches and repeats "
        "of the ratio to the autoregressive run of the same batch, decoded beside it.",
        "regret: mean per query of (run cost - per-query oracle cost); drafter setting: target rounds (exact for "
        "greedy); joint setting: autoregressive-forward equivalents from the fitted step-cost model (estimated). "
        "% oracle = 100 * oracle cost / run cost.",
        "oracle: the best fixed arm of each query, computed offline from the full-information records; it has "
        "no measured tokens/s.",
    ]
    procs = summary.get("processes") or {}
    if procs.get("count", 1) > 1:
        rate = procs.get("aggregate_tokens_per_s")
        notes.append(f"{procs['count']} processes decoded the study, each its share of the batches: tokens/s and "
                     "speedup are per process (a batch is timed on the process that decoded it); together they "
                     f"decoded {procs.get('new_tokens', 0):.0f} new tokens in {procs.get('wall_s', 0):.0f} s wall"
                     + (f", {rate:.1f} tokens/s in aggregate" if rate else "") + ". Learners shared across batches "
                     "(the joint setting's) learn per process.")
    for key, best in summary.get("best_fixed", {}).items():
        cands = summary.get("fixed_candidates", {}).get(key, {})
        measured = ", ".join(f"{a} {v['tokens_per_s']:.2f} tok/s" for a, v in cands.items()
                             if v.get("tokens_per_s") is not None)
        if best["exact"]:
            how = "fewest rounds over the stream, exact from the full-information records"
        elif key.startswith("drafter"):
            how = "fewest measured rounds among the candidates run live (ranked by the full-information estimate)"
        else:
            how = "highest measured tokens/s among the candidates run live (ranked by the step-cost estimate)"
        if best.get("chosen_by_estimate"):
            how = ("best by the full-information estimate: the live timings are unreliable "
                   f"({best['chosen_by_estimate']})")
        notes.append(f"best_fixed {key}: {best['arm']} ({how}" + (f"; live: {measured}" if measured else "") + ")")
    unreliable = [r for r in summary.get("rows", []) if r.get("unreliable") and r.get("tokens_per_s") is not None]
    for r in unreliable:
        notes.append(f"timing UNRELIABLE ({r['setting']}, {r['domain']}, bsz {r['bsz']}, {r['learner']}): "
                     f"{r['unreliable']}; its tokens/s and speedup are not to be compared")
    machine = summary.get("machine") or {}
    if machine.get("measured_batches"):
        notes.append(f"machine: {machine_line(machine)}")
    ll = summary.get("lossless", {})
    if ll.get("lossless") is None:
        notes.append("lossless: not checked (sampling: outputs are random draws).")
    else:
        notes.append(f"lossless: {'true' if ll['lossless'] else 'FALSE'} ({ll['checked']} outputs compared with "
                     "the autoregressive output of the same query)")
    for t in summary.get("targets", []):
        verdict = f"not judged ({t['not_judged']})" if t.get("met") is None else "met" if t["met"] else "NOT met"
        notes.append(f"target {t['setting']} bsz {t['bsz']}: {t['target']} = {t['ratio']:.3f} "
                     f"(>= {t['required']}: {verdict})")
    return notes


def machine_line(machine: dict) -> str:
    """How much of the machine the timed batches had (evaluators.reliability.machine_summary), one line."""
    waited = "" if machine.get("wait_share_median") is None else \
        f"; the runs' threads waited for a CPU {machine['wait_share_median']:.0%} of the time in the median batch " \
        f"({machine['wait_share_max']:.0%} at most)"
    return (f"other processes took {machine['others_share_median']:.0%} of the CPUs in the median timed batch "
            f"({machine['others_share_max']:.0%} at most){waited}; {machine['disturbed_batches']} of "
            f"{machine['measured_batches']} batches disturbed (limits: {machine.get('wait_limit', 0):.0%} waiting, "
            f"{machine['others_limit']:.0%} of the CPUs to others)")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_csv(rows: Sequence[dict], path: str | Path) -> None:
    """summary.csv: the required columns first, extra columns after; empty cell = not available."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(SUMMARY_COLUMNS + EXTRA_COLUMNS), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    os.replace(tmp, path)


def write_report(summary: dict, out_dir: str | Path, regret_curve: dict | None = None, plots: bool = True) -> str:
    """Write summary.csv, summary.json, lossless.json, table.txt and the plots; return the table text."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = sort_rows(summary["rows"])
    write_csv(rows, out / "summary.csv")
    lossless = summary["lossless"]
    _atomic_write(out / "lossless.json", json.dumps({"lossless": lossless["lossless"], "checked": lossless["checked"],
                                                     "mismatches": lossless["mismatches"]}, indent=1) + "\n")
    _atomic_write(out / "summary.json", json.dumps({**summary, "rows": rows, "regret_vs_arms": regret_curve},
                                                   indent=1, default=str) + "\n")
    text = format_table(rows) + "\n\n" + "\n".join(f"* {n}" for n in footnotes(summary)) + "\n"
    _atomic_write(out / "table.txt", text)
    if plots:
        plot_throughput_vs_bsz(rows, out / "throughput_vs_bsz.png")
        plot_mat_per_domain(rows, out / "mat_per_domain.png")
        if regret_curve is not None:
            plot_regret_vs_arms(regret_curve, out / "regret_vs_arms.png")
    return text


# ----------------------------------------------------------------------------- plots


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _color(learner: str):
    """One colour per learner in every plot."""
    import matplotlib
    return matplotlib.colormaps["tab10"](ROW_ORDER.index(learner) % 10) if learner in ROW_ORDER else None


def _stream(rows: Sequence[dict]) -> str:
    return "mixed" if any(r["domain"] == "mixed" for r in rows) else rows[0]["domain"]


def plot_throughput_vs_bsz(rows: Sequence[dict], path: str | Path) -> None:
    """Tokens/s vs batch size, one line per learner, one panel per setting (whole stream)."""
    plt = _pyplot()
    stream = _stream(rows)
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    fig, axes = plt.subplots(1, len(settings), figsize=(6 * len(settings), 4.2), squeeze=False)
    for ax, setting in zip(axes[0], settings):
        sel = [r for r in rows if r["setting"] == setting and r["domain"] == stream and r["tokens_per_s"]]
        for learner in [l for l in ROW_ORDER if any(r["learner"] == l for r in sel)]:
            pts = sorted((r["bsz"], r["tokens_per_s"]) for r in sel if r["learner"] == learner)
            style = "--" if learner in ("autoregressive", "best_fixed") else "-"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o", label=learner, color=_color(learner))
        bszs = sorted({r["bsz"] for r in sel})
        ax.set_xticks(bszs)
        ax.set_xlabel("batch size")
        ax.set_ylabel("tokens/s (measured)")
        ax.set_title(f"{setting} setting, {stream} stream")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_mat_per_domain(rows: Sequence[dict], path: str | Path) -> None:
    """MAT per domain (and the whole stream) per learner, grouped bars, at the smallest batch size."""
    plt = _pyplot()
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    bsz = min(r["bsz"] for r in rows)
    fig, axes = plt.subplots(len(settings), 1, figsize=(10, 3.6 * len(settings)), squeeze=False)
    for ax, setting in zip(axes[:, 0], settings):
        sel = [r for r in rows if r["setting"] == setting and r["bsz"] == bsz and r["mat"] is not None]
        domains = list(dict.fromkeys(r["domain"] for r in sel))
        learners = [l for l in ROW_ORDER if any(r["learner"] == l for r in sel)]
        width = 0.8 / max(len(learners), 1)
        for i, learner in enumerate(learners):
            vals = {r["domain"]: r["mat"] for r in sel if r["learner"] == learner}
            xs = [k + (i - (len(learners) - 1) / 2) * width for k in range(len(domains))]
            ax.bar(xs, [vals.get(d, 0.0) for d in domains], width, label=learner, color=_color(learner))
        ax.set_xticks(range(len(domains)))
        ax.set_xticklabels(domains)
        ax.set_ylabel("MAT (tokens / target forward)")
        ax.set_title(f"{setting} setting, bsz {bsz}")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_regret_vs_arms(curve: dict, path: str | Path) -> None:
    """Cumulative stopping-time regret vs number of arms (offline replay), HedgeSpec vs bandits."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for learner, ys in curve["regret"].items():
        ax.plot(curve["sizes"], ys, marker="o", lw=2.5 if learner == "hedgespec" else 1.5, label=learner,
                color=_color(learner))
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("number of arms K (first K of: " + ", ".join(curve["arms"][:4]) + ", ...)")
    ax.set_ylabel("cumulative stopping-time regret (rounds)")
    ax.set_title("regret vs pool size (replayed on full-information records)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
