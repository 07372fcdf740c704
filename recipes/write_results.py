"""Write docs/results.md from the results folders (their summary.json), so no figure is copied by hand.

    python recipes/write_results.py                       # every results/*/summary.json, by name
    python recipes/write_results.py results/quick results/bench_joint --out docs/results.md

Each section names the command that measured it, when, how much of the machine its timed batches
had, and what is unreliable (evaluators.results_doc).
"""
from __future__ import annotations

import sys
from pathlib import Path

from specsel.flags import add_flags, flag_parser, parse_flags, run_command


def main(argv=None) -> int:
    ap = flag_parser("write_results", __doc__)
    ap.add_argument("folders", nargs="*", help="results folders, in the order to show them (default: every "
                    "results/*/ with a summary.json)")
    add_flags(ap, "out", out="docs/results.md")
    args = parse_flags(ap, argv)
    from evaluators.results_doc import results_document
    folders = [Path(f) for f in args.folders] or sorted(p.parent for p in Path("results").glob("*/summary.json"))
    missing = [str(f) for f in folders if not (f / "summary.json").is_file()]
    if missing:
        raise ValueError(f"no summary.json in {', '.join(missing)}; pass folders written by specsel eval or a "
                         "recipes/bench_*.py run")
    if not folders:
        raise ValueError("no results folder with a summary.json under results/; run the study or a benchmark first")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(results_document(folders))
    print(f"wrote {args.out} from {len(folders)} results folder(s): {', '.join(str(f) for f in folders)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "write_results"))
