"""Wall time of one study in one process against the same study split over N processes
(torchrun, gloo on CPU), run alternately and repeated, on the same cores: one process with
--threads C against N processes with --threads C/N each. Prints the median wall times (the
whole command, and decoding alone) and the speedup of N processes, with its spread.

    python recipes/bench_ranks.py --data-dir ../shared/data --domains math,humaneval,medqa --limit 4 \
        --procs 2 --cores 2 --repeats 3
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from specsel.flags import add_flags, flag_parser, parse_flags, run_command


def study_argv(args, out: Path, threads: int) -> list[str]:
    argv = ["eval", "--domains", args.domains, "--limit", str(args.limit), "--max-new-tokens",
            str(args.max_new_tokens), "--bsz", args.bsz, "--settings", args.settings, "--learners", args.learners,
            "--drafters", args.drafters, "--threads", str(threads), "--no-progress", "--out", str(out)]
    return argv + (["--data-dir", args.data_dir] if args.data_dir else [])


def run(command: list[str], out: Path) -> tuple[float, float]:
    """(wall of the whole command, wall of the decoding) of one study into a fresh `out`."""
    shutil.rmtree(out, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    t0 = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"bench_ranks: the study failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    summary = json.loads((out / "summary.json").read_text())
    return wall, summary["processes"]["wall_s"]


def main(argv=None) -> int:
    ap = flag_parser("bench_ranks", __doc__)
    add_flags(ap, "data_dir", "domains", "limit", "max_new_tokens", "bsz", "settings", "learners", "drafters",
              "repeats", "json", limit=4, max_new_tokens=32, bsz="2", settings="drafter", learners="hedgespec",
              drafters="ngram,eagle", repeats=3)
    ap.add_argument("--procs", type=int, default=2, help="processes of the split study")
    ap.add_argument("--cores", type=int, default=2, help="CPU threads in all, shared by the processes")
    args = parse_flags(ap, argv)
    if args.procs < 2 or args.cores < args.procs or args.repeats < 1:
        ap.error("--procs must be >= 2, --cores >= --procs and --repeats >= 1")

    tmp = Path(tempfile.mkdtemp(prefix="bench_ranks-"))
    one = [sys.executable, "-m", "specsel", *study_argv(args, tmp / "one", args.cores)]
    split = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.procs),
             "-m", "specsel", *study_argv(args, tmp / "split", args.cores // args.procs)]
    walls: dict[str, list[tuple[float, float]]] = {"one": [], "split": []}
    for k in range(args.repeats):               # alternate, so drift hits both alike
        order = [("one", one), ("split", split)] if k % 2 == 0 else [("split", split), ("one", one)]
        for name, command in order:
            walls[name].append(run(command, tmp / name))
            print(f"repeat {k + 1} {name}: {walls[name][-1][0]:.1f} s wall, {walls[name][-1][1]:.1f} s decoding",
                  flush=True)
    shutil.rmtree(tmp, ignore_errors=True)

    def med(name, i):
        return statistics.median(w[i] for w in walls[name])
    speedups = [o[1] / s[1] for o, s in zip(walls["one"], walls["split"])]
    print(f"\n1 process x {args.cores} threads vs {args.procs} processes x {args.cores // args.procs} threads, "
          f"{args.repeats} alternating repeats (median):")
    print(f"  whole command: {med('one', 0):.1f} s vs {med('split', 0):.1f} s "
          f"({med('one', 0) / med('split', 0):.2f}x)")
    print(f"  decoding:      {med('one', 1):.1f} s vs {med('split', 1):.1f} s "
          f"(speedup {statistics.median(speedups):.2f}x, min {min(speedups):.2f}x, max {max(speedups):.2f}x)")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "walls": walls, "speedups": speedups}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "bench_ranks"))
