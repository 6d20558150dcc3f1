"""The nemesis waits, after each fault, until every instance keeps pace with the log, not only until it has
applied the head of the fault's end: the next fault must never take the only instance holding the writes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, cast

from chroma_ha.torture.cluster import TortureCluster
from chroma_ha.torture.history import History
from chroma_ha.torture.nemesis import Nemesis


class CatchingUp:
    """A cluster whose log grows while a rebuilt instance replays it: reaching the head of the fault's end takes
    0.3 s, by which time the head has moved on; later heads are reached at once."""

    def __init__(self) -> None:
        self.heads = iter([100, 500, 520])
        self.waited: list[int] = []

    def head(self) -> int:
        return next(self.heads)

    def wait_caught_up(self, timeout: float, head: int | None = None) -> bool:
        assert head is not None
        self.waited.append(head)
        if head == 100:
            time.sleep(0.3)
        return True


def test_after_a_fault_the_nemesis_waits_until_the_instances_keep_pace_with_the_log(tmp_path: Path) -> None:
    cluster = CatchingUp()
    history = History(tmp_path / "history.jsonl", {})
    try:
        nemesis = Nemesis(cast(TortureCluster, cluster), history, seed=1, kinds=["instance_kill"], pace=0.1)
        assert cast(Any, nemesis)._wait_recovered()
    finally:
        history.close()
    assert cluster.waited == [100, 500]  # the head of when 100 was reached, 0.3 s late; 500 was reached at once
