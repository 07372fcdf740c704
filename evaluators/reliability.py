"""Whether a speed figure can be trusted: the machine each batch had, and the spread of its ratios.

The executor measures every decode (``batch_machine``, specsel.study.meter). A speed figure is
**unreliable** when

* during one of the batches it rests on (the run's own, or its baseline's for a ratio), the run's
  threads spent more than `WAIT_LIMIT` of their time ready to run but waiting for a CPU
  (``wait_s / (run_s + wait_s)``, the kernel's run-queue delay, exact to the nanosecond), or other
  processes took more than `OTHERS_LIMIT` of the machine's CPUs (``others_cpu_s / (wall_s * cpus)``,
  counted in 10 ms ticks, so judged only over batches of at least `MIN_CPU_S` CPU-seconds);
* or, with repeats, one batch's ratio moved by more than `SPREAD_LIMIT` between repeats (max/min
  - 1 over the repeats of the same batch): the machine was not steady enough to rank the runs.

Thresholds, from measurements on this project's 2-core machine (recipes/bench_timing.py;
docs/design.md, "Speed figures"): on an idle machine the runs' threads waited for a CPU 0.5% of
the time (at most 0.6%), other processes took 0.6% of the CPUs (at most 1.1%), and one batch's
ratio moved at most 11% between repeats; with one core kept busy by another process, the threads
waited 37% of the time (36-38%) and others took 38% of the CPUs.
A figure judged unreliable is shown with the reason; a target computed from it is "not judged".
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Sequence

OTHERS_LIMIT = 0.10     # other processes' share of the CPUs during a batch
WAIT_LIMIT = 0.15       # share of its threads' time a run waited for a CPU during a batch
MIN_CPU_S = 1.0         # wall_s * cpus below which tick-counted CPU times are too coarse to judge
SPREAD_LIMIT = 0.25     # max/min - 1 of one batch's ratio over repeats


def others_share(machine: dict | None) -> float | None:
    """Other processes' share of the CPUs during a batch (None when not measured)."""
    if not machine or not machine.get("wall_s") or not machine.get("cpus"):
        return None
    return machine["others_cpu_s"] / (machine["wall_s"] * machine["cpus"])


def wait_share(machine: dict | None) -> float | None:
    """The share of its threads' time a run spent waiting for a CPU during a batch (None: not measured)."""
    if not machine or "wait_s" not in machine:
        return None
    total = machine["run_s"] + machine["wait_s"]
    return machine["wait_s"] / total if total > 0 else None


def disturbance(machine: dict | None) -> str | None:
    """Why a batch's timing cannot be trusted, or None."""
    waited = wait_share(machine)
    if waited is not None and waited > WAIT_LIMIT:
        return f"its threads waited for a CPU {waited:.0%} of the time"
    others = others_share(machine)
    if others is not None and others > OTHERS_LIMIT and machine["wall_s"] * machine["cpus"] >= MIN_CPU_S:
        return f"other processes took {others:.0%} of the CPUs"
    return None


def own_share(machine: dict | None) -> float | None:
    """The run's CPU seconds over what its threads could have used (information, not a rule: a GPU
    run or a one-thread stretch of Python uses less without being disturbed)."""
    if not machine or not machine.get("wall_s") or not machine.get("cpus"):
        return None
    return machine["cpu_s"] / (machine["wall_s"] * max(1, min(machine.get("threads") or 1, machine["cpus"])))


def disturbed(times: dict, keys: Iterable[tuple]) -> list[tuple[tuple, str]]:
    """The batches among `keys` ((run, bsz, batch) of evaluators.timing.batch_times) whose timing was
    disturbed (`disturbance`), with why."""
    out = []
    for key in dict.fromkeys(keys):
        why = disturbance(times[key].machine) if key in times else None
        if why is not None:
            out.append((key, why))
    return out


def repeat_spread(pairs: Sequence) -> float | None:
    """The widest max/min - 1 of one batch's ratio over its repeats (None with one repeat)."""
    by_batch = defaultdict(list)
    for p in pairs:
        by_batch[p.batch].append(p.ratio)
    spreads = [max(v) / min(v) - 1.0 for v in by_batch.values() if len(v) > 1 and min(v) > 0]
    return max(spreads) if spreads else None


def judge(times: dict, keys: Iterable[tuple], pairs: Sequence = ()) -> str | None:
    """None when a speed figure resting on the batches `keys` (and, for a ratio, its `pairs`) is
    reliable; else the reason, one line."""
    keys = list(dict.fromkeys(keys))
    bad = disturbed(times, keys)
    if bad:
        batches = len({k[2] for k, _ in bad})
        total = len({k[2] for k in keys})
        return (f"{bad[0][1]} in batch {bad[0][0][2]} ({batches} of {total} batches disturbed; limits: threads "
                f"waiting {WAIT_LIMIT:.0%}, other processes {OTHERS_LIMIT:.0%} of the CPUs)")
    widest = repeat_spread(pairs)
    if widest is not None and widest > SPREAD_LIMIT:
        return f"one batch's ratio moved by {widest:.0%} between repeats (limit {SPREAD_LIMIT:.0%})"
    return None


def machine_summary(times: dict) -> dict:
    """Over every measured batch: other processes' share of the CPUs and the runs' waiting share
    (median, max), how many batches were disturbed, the runs' own share of their threads (median)."""
    machines = [t.machine for t in times.values() if t.machine]
    if not machines:
        return {"measured_batches": 0}

    def mid_max(values):
        values = sorted(v for v in values if v is not None)
        return (values[len(values) // 2], values[-1]) if values else (None, None)
    others, waits, own = (mid_max(f(m) for m in machines) for f in (others_share, wait_share, own_share))
    return {"measured_batches": len(machines), "others_share_median": others[0], "others_share_max": others[1],
            "wait_share_median": waits[0], "wait_share_max": waits[1], "own_share_median": own[0],
            "disturbed_batches": sum(disturbance(m) is not None for m in machines), "others_limit": OTHERS_LIMIT,
            "wait_limit": WAIT_LIMIT, "spread_limit": SPREAD_LIMIT}
