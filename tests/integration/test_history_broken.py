"""The checker catches stale reads when there are some: the same short run, a slow network to one instance while
writes go on, first with the gateway as it is (reads wait for an instance that holds their writes: no stale read
goes unmarked) and then with `unsafe_reads_ignore_freshness` (reads go to the lagging instance too): the checker
must report stale reads, and nothing else is wrong with the history."""

from __future__ import annotations

from pathlib import Path

import pytest

from chroma_ha.torture import TortureConfig, run_torture
from chroma_ha.torture.proxy import NetFaults
from chroma_ha.torture.report import render
from tests.harness import torture_seed

DURATION_S = 25.0
# The first instance's applier lags by a round trip or two of this; its health probes (0.5 s by default) must
# still pass through it, or it would be marked down and read by nobody.
SLOW = NetFaults(latency=0.15)
SETTINGS = {"health_timeout": "2", "instance_weights": "3,1"}


@pytest.mark.slow
def test_reads_that_ignore_freshness_are_reported_stale_and_the_same_run_without_is_clean(tmp_path: Path) -> None:
    seed = torture_seed()
    safe = TortureConfig(duration=DURATION_S, seed=seed, faults=(), network=SLOW, gateway_settings=SETTINGS)
    clean = run_torture(safe, tmp_path / "safe", say=print)
    print(render(clean))
    assert clean.anomalies == {}, render(clean)

    unsafe = TortureConfig(
        duration=DURATION_S,
        seed=seed,
        faults=(),
        network=SLOW,
        gateway_settings={**SETTINGS, "unsafe_reads_ignore_freshness": "true"},
    )
    broken = run_torture(unsafe, tmp_path / "unsafe", say=print)
    shown = render(broken)
    print(shown)
    assert broken.anomalies.get("stale_read", 0) > 0, shown
    # a stale read of a deleted key is a resurrected delete; nothing else is wrong: writes and the end state hold
    assert set(broken.anomalies) <= {"stale_read", "resurrected_delete"}, shown
    assert broken.stale_marked == 0, "with freshness ignored the gateway marks nothing"
    first = broken.first_anomalies[0]
    assert first.timeline and first.key is not None
