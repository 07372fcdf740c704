"""A/B benchmarks on the one executor: the same batches decoded one way and the other, side by side.

    result = run_ab(items, out, decoder, runs, bsz=4, repeats=3, pairs={"ngram@4": ("in_place/ngram@4",
                    "concatenate/ngram@4")})

Each pair (A, B) is judged batch by batch: A's tokens/s over B's on every batch and repeat they
both decoded (evaluators.timing), summarised as the median with its spread and, when a batch was
disturbed or the ratio is unsteady, the reason it is unreliable (evaluators.reliability). Every
output must equal the first run's for the same query (greedy is lossless whichever way it is
decoded). The lines go to OUT/queries.jsonl in the study's schema; a rerun resumes.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Mapping, Sequence

from evaluators.bench import bench_rows, versus
from evaluators.lines import complete_lines
from evaluators.reliability import machine_summary
from evaluators.timing import batch_times
from specsel.study.executor import Decoder, Executor, Phase, RunSpec
from specsel.study.items import StudyItem
from specsel.study.store import ResultStore


def run_ab(items: Sequence[StudyItem], out: str | Path, decoder: Decoder, runs: Sequence[RunSpec], bsz: int,
           repeats: int, pairs: Mapping[str, tuple[str, str]], progress: bool = True) -> dict:
    """Decode `runs` over the stream (repeated, interleaved) and judge each pair of `pairs`
    ({label: (A, B)}): {"pairs": {label: A over B}, "rows": per run, "lossless", "machine"}."""
    out = Path(out)
    store = ResultStore(out / "queries.jsonl", resume=True)
    Executor(items, store, decoder, progress=progress).execute(Phase(bsz, tuple(runs), repeats))
    lines = [l for l in complete_lines(store.lines) if l["bsz"] == bsz]
    times = batch_times(lines)
    first = {}
    for line in lines:
        first.setdefault(line["qid"], line["tokens"])
    rows, _ = bench_rows(lines, [r.name for r in runs], bsz, repeats, baseline=runs[0].name)
    return {"pairs": {label: versus(times, a, b, bsz, repeats) for label, (a, b) in pairs.items()}, "rows": rows,
            "lossless": all(l["tokens"] == first[l["qid"]] for l in lines), "queries": len(items), "bsz": bsz,
            "repeats": repeats, "machine": machine_summary(times)}


def report_ab(result: dict, name: str, what: str, out: str | Path, path: str | Path | None = None) -> int:
    """Print each pair's ratio (`what`: what A over B means), the lossless verdict; write the result
    (with its command) to OUT/summary.json and to `path`. Returns the exit status: 1 when an output
    differed."""
    for label, v in result["pairs"].items():
        if v is None:
            print(f"{label}: no batch decoded both ways")
            continue
        note = f"  UNRELIABLE: {v['unreliable']}" if v["unreliable"] else ""
        print(f"{label}: {what} {v['median']:.3f}x (min {v['min']:.3f}, max {v['max']:.3f}, {v['n']} batch ratios)"
              f"{note}")
    print(f"lossless: {result['lossless']}")
    result = {"kind": name, "command": f"python recipes/{name}.py " + " ".join(sys.argv[1:]),
              "created": time.strftime("%Y-%m-%d %H:%M:%S"), "what": what, **result}
    for target in [Path(out) / "summary.json", *([Path(path)] if path else [])]:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0 if result["lossless"] else 1
