"""How much of the machine a timed batch had: the executor measures every decode with a MachineMeter.

A speed figure taken while another process held a core can be several times wrong, so each
batch's query lines carry ``batch_machine``:

    wall_s        seconds the batch took
    cpu_s         CPU seconds of this run's processes over it (this process, and the other ranks
                  of a torchrun/accelerate launch, which share the machine on purpose)
    others_cpu_s  CPU seconds everything else took over it on the CPUs this process may use
                  (other processes, the kernel's interrupts, and a virtual machine's stolen time)
    cpus          those CPUs
    threads       torch's CPU threads
    run_s         seconds this run's threads ran on a CPU (the kernel's schedstat, nanoseconds)
    wait_s        seconds they were ready to run but waited for a CPU (run-queue delay)

Evaluators judge the batch from these (``evaluators.reliability``): other processes' share of
the machine is ``others_cpu_s / (wall_s * cpus)``, and the share of their time this run's threads
spent waiting for a CPU is ``wait_s / (run_s + wait_s)``. CPU times come from psutil (/proc/stat,
in 10 ms ticks: coarse for a batch of a fraction of a second); run and wait times from
/proc/<pid>/task/<tid>/schedstat, exact to the nanosecond (absent off Linux: 0).
"""
from __future__ import annotations

import os
import time

import psutil


def _cpus() -> list[int]:
    """The CPUs this process may run on (all of them where affinity is unknown)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:                      # not Linux
        return list(range(psutil.cpu_count() or 1))


def _busy(per_cpu, cpus: list[int]) -> float:
    """CPU seconds spent busy on `cpus`: everything but idle and I/O wait (steal counts as busy:
    time the hypervisor gave to another machine is time this one did not get)."""
    total = 0.0
    for i in cpus:
        if i < len(per_cpu):
            t = per_cpu[i]
            total += sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0) \
                - getattr(t, "guest_nice", 0.0)     # guest time is already counted in user
    return total


def _schedstat(pids: list[int]) -> tuple[float, float]:
    """(seconds on a CPU, seconds waiting for one) summed over every thread of `pids`."""
    run = wait = 0
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    fields = f.read().split()
                run, wait = run + int(fields[0]), wait + int(fields[1])
            except (OSError, ValueError, IndexError):
                continue                        # a thread that ended, or no schedstat here
    return run / 1e9, wait / 1e9


class MachineMeter:
    """Measure one stretch of work: `start()`, then `stop()` returns the batch_machine dict. `group`
    are the pids whose CPU time counts as this run's (default: this process; with several ranks,
    their processes)."""

    def __init__(self, group: list[int] | None = None):
        self.cpus = _cpus()
        self.group = group or [os.getpid()]
        self._start: tuple[float, ...] | None = None

    def _own(self) -> float:
        total = 0.0
        for pid in self.group:
            try:
                t = psutil.Process(pid).cpu_times()
                total += t.user + t.system
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue                        # a rank that ended (its time is lost to both sides)
        return total

    def start(self) -> None:
        self._start = (time.perf_counter(), self._own(), _busy(psutil.cpu_times(percpu=True), self.cpus),
                       *_schedstat(self.group))

    def stop(self) -> dict:
        import torch

        if self._start is None:
            raise RuntimeError("MachineMeter.stop() before start()")
        t0, own0, busy0, run0, wait0 = self._start
        wall = time.perf_counter() - t0
        own = self._own() - own0
        busy = _busy(psutil.cpu_times(percpu=True), self.cpus) - busy0
        run, wait = _schedstat(self.group)
        self._start = None
        return {"wall_s": round(wall, 4), "cpu_s": round(own, 3), "others_cpu_s": round(max(busy - own, 0.0), 3),
                "cpus": len(self.cpus), "threads": torch.get_num_threads(), "run_s": round(max(run - run0, 0.0), 4),
                "wait_s": round(max(wait - wait0, 0.0), 4)}


def rank_group() -> list[int]:
    """The pids of this run when a launcher started several ranks on this machine: this process and
    its siblings (the launcher's other children); else this process alone."""
    me = psutil.Process()
    if int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")) or 1) <= 1:
        return [me.pid]
    try:
        parent = me.parent()
        return sorted({me.pid, *(p.pid for p in parent.children())}) if parent is not None else [me.pid]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return [me.pid]
