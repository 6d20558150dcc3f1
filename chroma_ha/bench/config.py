"""What one benchmark run does: sizes, durations and concurrencies, as a value object with named defaults."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

DEFAULT_RECORDS = 5000
DEFAULT_DIM = 128
DEFAULT_LOAD_BATCH = 500
DEFAULT_N_RESULTS = 10
DEFAULT_QUERY_POOL = 256
DEFAULT_CONCURRENCIES = (1, 8)
DEFAULT_THROUGHPUT_SECONDS = 10.0  # per target and concurrency, split into pairs of rounds of (per side):
DEFAULT_ROUND_SECONDS = 0.25  # short, so that both sides see the same moments of this shared machine
DEFAULT_WARMUP_SECONDS = 1.0
DEFAULT_REST_SECONDS = 5.0  # the gateways' CPU with nothing sent: what their background work costs
DEFAULT_LATENCY_SAMPLES = 1500  # per target
DEFAULT_WRITE_BATCH = 10
DEFAULT_WRITE_CONCURRENCY = 8
DEFAULT_SATURATION_SECONDS = 8.0  # per side (standalone Chroma, the gateway), in pairs of rounds of:
DEFAULT_SATURATION_ROUND_SECONDS = 1.0  # long enough for a closed loop of writes to settle, short against the noise
DEFAULT_PACED_SECONDS = 12.0
DEFAULT_PACED_FRACTION = 0.5  # of the sustainable write rate
DEFAULT_LAG_POLL_SECONDS = 0.005
DEFAULT_DRAIN_TIMEOUT_SECONDS = 60.0
DEFAULT_FRESHNESS_PAIRS = 500  # write-then-read pairs across gateways, when there are several
DEFAULT_SEED = 7


@dataclass(frozen=True)
class BenchConfig:
    records: int = DEFAULT_RECORDS
    dim: int = DEFAULT_DIM
    load_batch: int = DEFAULT_LOAD_BATCH
    n_results: int = DEFAULT_N_RESULTS
    query_pool: int = DEFAULT_QUERY_POOL
    concurrencies: tuple[int, ...] = DEFAULT_CONCURRENCIES
    throughput_seconds: float = DEFAULT_THROUGHPUT_SECONDS
    round_seconds: float = DEFAULT_ROUND_SECONDS
    warmup_seconds: float = DEFAULT_WARMUP_SECONDS
    rest_seconds: float = DEFAULT_REST_SECONDS
    latency_samples: int = DEFAULT_LATENCY_SAMPLES
    write_batch: int = DEFAULT_WRITE_BATCH
    write_concurrency: int = DEFAULT_WRITE_CONCURRENCY
    saturation_seconds: float = DEFAULT_SATURATION_SECONDS
    saturation_round_seconds: float = DEFAULT_SATURATION_ROUND_SECONDS
    paced_seconds: float = DEFAULT_PACED_SECONDS
    paced_fraction: float = DEFAULT_PACED_FRACTION
    lag_poll_seconds: float = DEFAULT_LAG_POLL_SECONDS
    drain_timeout_seconds: float = DEFAULT_DRAIN_TIMEOUT_SECONDS
    freshness_pairs: int = DEFAULT_FRESHNESS_PAIRS
    seed: int = DEFAULT_SEED

    def __post_init__(self) -> None:
        positive = (
            "records",
            "dim",
            "load_batch",
            "n_results",
            "query_pool",
            "latency_samples",
            "write_batch",
            "write_concurrency",
            "throughput_seconds",
            "round_seconds",
            "rest_seconds",
            "saturation_seconds",
            "saturation_round_seconds",
            "paced_seconds",
            "lag_poll_seconds",
            "drain_timeout_seconds",
            "freshness_pairs",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"bench setting {name} must be positive, got {getattr(self, name)}")
        if not self.concurrencies or min(self.concurrencies) < 1:
            raise ValueError("bench setting concurrencies: give at least one concurrency of 1 or more")
        if not 0 < self.paced_fraction <= 1:
            raise ValueError("bench setting paced_fraction must be in (0, 1]")
        if self.warmup_seconds < 0:
            raise ValueError("bench setting warmup_seconds must not be negative")

    @classmethod
    def quick(cls) -> BenchConfig:
        """A smoke run of about ten seconds: every figure is produced, none is meant to be read closely."""
        return cls(
            records=300,
            load_batch=150,
            query_pool=32,
            throughput_seconds=0.6,
            round_seconds=0.3,
            warmup_seconds=0.2,
            rest_seconds=0.5,
            latency_samples=100,
            saturation_seconds=1.0,
            saturation_round_seconds=0.5,
            paced_seconds=1.0,
            drain_timeout_seconds=30.0,
            freshness_pairs=50,
        )

    @property
    def rounds(self) -> int:
        """Alternating rounds per concurrency: each side gets `throughput_seconds` in all."""
        return max(1, round(self.throughput_seconds / self.round_seconds))

    @property
    def saturation_rounds(self) -> int:
        """Alternating rounds of writes: each side gets `saturation_seconds` in all."""
        return max(1, round(self.saturation_seconds / self.saturation_round_seconds))

    def with_overrides(self, **overrides: Any) -> BenchConfig:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
