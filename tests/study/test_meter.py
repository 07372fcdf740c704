"""specsel.study.meter: a timed stretch knows how much of the machine other processes took."""
import multiprocessing
import time

from specsel.study.meter import MachineMeter


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_another_process_spinning_shows_up_as_others_cpu():
    meter = MachineMeter()
    busy = multiprocessing.get_context("spawn").Process(target=_spin, args=(1.5,))
    busy.start()
    time.sleep(0.3)                      # let it start spinning
    meter.start()
    time.sleep(0.8)                      # this process idles meanwhile
    reading = meter.stop()
    busy.join()
    assert set(reading) == {"wall_s", "cpu_s", "others_cpu_s", "cpus", "threads", "run_s", "wait_s"}
    assert reading["cpu_s"] < 0.3                          # we slept
    assert reading["others_cpu_s"] > 0.5 * reading["wall_s"]   # it held most of a core
    assert reading["cpus"] >= 1 and reading["threads"] >= 1


def test_a_run_that_waits_for_a_cpu_knows_it():
    """With a spinning process on every CPU, this process's spinning thread waits for a turn."""
    import os
    meter = MachineMeter()
    spinners = [multiprocessing.get_context("spawn").Process(target=_spin, args=(2.5,))
                for _ in range(len(os.sched_getaffinity(0)))]
    for p in spinners:
        p.start()
    time.sleep(0.5)
    meter.start()
    _spin(1.0)
    reading = meter.stop()
    for p in spinners:
        p.join()
    assert reading["wait_s"] > 0.15 * (reading["run_s"] + reading["wait_s"])
