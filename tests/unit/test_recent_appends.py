"""The entries a store keeps of its own appends for its appliers: bounded, and never a read with a gap."""

from __future__ import annotations

from chroma_ha.store import NewEntry
from chroma_ha.store.recent import RecentAppends, appended


def entries(first: int, *sizes: int) -> list[NewEntry]:
    return [NewEntry("add", "POST", f"/c/add/{first + n}", b"x" * size) for n, size in enumerate(sizes)]


def held(recent: RecentAppends, after: int = 0) -> list[int]:
    return [e.seq for e in recent.read(after, 100, None)]


def test_the_oldest_are_forgotten_past_the_count_and_bytes_bounds() -> None:
    recent = RecentAppends(max_entries=3, max_bytes=100)
    recent.add(appended(entries(1, 10, 10, 10, 10), [1, 2, 3, 4], 0.0))
    assert held(recent) == [] and held(recent, 1) == [2, 3, 4]  # seq 1 evicted: a read from 0 asks the log
    recent.add(appended(entries(5, 90), [5], 0.0))
    assert held(recent, 3) == [4, 5] and held(recent, 2) == []  # 10 + 90 bytes fit, 10 + 10 + 90 do not


def test_a_read_stops_at_the_first_seq_not_held() -> None:
    recent = RecentAppends()
    recent.add(appended(entries(1, 1, 1), [1, 2], 5.0))
    recent.add(appended(entries(4, 1), [4], 6.0))  # seq 3 is another gateway's
    assert held(recent) == [1, 2] and held(recent, 3) == [4]
    assert [e.created_at for e in recent.read(0, 1, None)] == [5.0]
    recent.drop_through(2)
    assert held(recent) == [] and held(recent, 3) == [4]
