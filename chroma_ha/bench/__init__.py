"""`chroma-ha bench`: direct Chroma and the gateway measured side by side, in one run, on a local cluster."""

from .config import BenchConfig
from .report import render_table
from .runner import run_bench

__all__ = ["BenchConfig", "render_table", "run_bench"]
