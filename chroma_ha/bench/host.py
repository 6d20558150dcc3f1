"""How busy the machine was with work that is not this benchmark's: the benchmark shares its CPUs, and a figure
measured while other processes ran is worth less. Reported, never corrected for."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

import psutil


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
