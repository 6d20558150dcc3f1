"""Recorded histories that prove the guarantees: a workload of versioned writes and reads through the gateways
(`workload`), a seeded nemesis of process, store and network faults (`nemesis`, `proxy`), the record of it all
(`history`) and a checker of pure functions over that record (`checker`); `run` puts them together for the tests
and for `chroma-ha torture`.
"""

from __future__ import annotations

from .checker import Anomaly, Report, check
from .history import Fault, FinalState, History, Op, Recorded, load
from .run import TortureConfig, run_torture

__all__ = [
    "Anomaly",
    "Fault",
    "FinalState",
    "History",
    "Op",
    "Recorded",
    "Report",
    "TortureConfig",
    "check",
    "load",
    "run_torture",
]
