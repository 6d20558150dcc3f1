"""How busy the machine was with work that is not this benchmark's: the benchmark shares its CPUs, and a figure
measured while other processes ran is worth less. Reported, never corrected for."""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Callable, Iterable

import psutil


def cpu_seconds_of(pid: int) -> Callable[[], float]:
    """A reader of a process's CPU seconds (user and system, every thread, exited ones included).

    It reads the process's CPU-time clock where the system lends it to other processes (`clock_getcpuclockid`,
    on Linux), to the nanosecond; elsewhere psutil's user and system times, which count clock ticks of 10 ms: over
    the benchmark's 5 s at rest, that is 2 ms a second either way."""
    clock = _cpu_clock(pid)
    if clock is not None:
        return lambda: time.clock_gettime(clock)
    process = psutil.Process(pid)

    def ticks() -> float:
        times = process.cpu_times()
        return float(times.user + times.system)

    return ticks


def _cpu_clock(pid: int) -> int | None:
    try:
        clock = ctypes.c_int()  # clockid_t
        if ctypes.CDLL(None).clock_getcpuclockid(pid, ctypes.byref(clock)) != 0:  # returns an error number
            return None
        time.clock_gettime(clock.value)  # readable by this process, too
    except (OSError, AttributeError):  # no such function here, or a clock it may not read
        return None
    return clock.value


def _busy_seconds() -> float:
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def _tree_cpu_seconds(pids: Iterable[int]) -> float:
    """CPU of these processes and their descendants, each counted once (the servers are our children)."""
    processes: dict[int, psutil.Process] = {}
    for pid in pids:
        try:
            root = psutil.Process(pid)
            processes.update({p.pid: p for p in (root, *root.children(recursive=True))})
        except psutil.Error:
            continue
    total = 0.0
    for process in processes.values():
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


class HostLoad:
    """CPU used by every process on the machine versus by ours (this one, the gateway, the Chroma servers)."""

    def __init__(self, pids: Iterable[int]) -> None:
        self._pids = [os.getpid(), *pids]
        self._started = time.monotonic()
        self._busy = _busy_seconds()
        self._ours = _tree_cpu_seconds(self._pids)
        self.load_average_start = os.getloadavg()[0]

    def summary(self) -> dict[str, float]:
        wall = max(time.monotonic() - self._started, 1e-9)
        cpus = psutil.cpu_count() or 1
        busy = _busy_seconds() - self._busy
        ours = _tree_cpu_seconds(self._pids) - self._ours
        return {
            "cpu_percent_ours": round(100 * ours / (wall * cpus), 1),
            "cpu_percent_others": round(100 * max(0.0, busy - ours) / (wall * cpus), 1),
            "load_average_start": round(self.load_average_start, 2),
            "load_average_end": round(os.getloadavg()[0], 2),
        }
