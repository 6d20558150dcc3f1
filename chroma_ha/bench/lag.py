"""Replication lag: from a write's acknowledgement by the gateway to its records being readable on the LAST instance.

The gateway's answer does not carry the entry's `seq`, so the lag is observed from outside: after each ack, one
id of the written batch is added to every instance's pending set, and one poller per instance asks that instance
directly (`get` by ids, with the instance's own collection id) which pending ids it holds. An id is marked seen
when the answer that contains it arrives, so each figure is an upper bound, finer than the poll interval plus
one `get` round trip.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp
import orjson

from .payloads import Endpoint, get_ids_body
from .workloads import post

MAX_IDS_PER_POLL = 500


@dataclass
class LagTracker:
    instances: list[Endpoint]
    acked_at: dict[str, float] = field(default_factory=dict)
    seen_at: dict[str, dict[str, float]] = field(default_factory=dict)
    pending: dict[str, set[str]] = field(default_factory=dict)
    polls: int = 0
    poll_errors: int = 0

    def __post_init__(self) -> None:
        self.pending = {e.name: set() for e in self.instances}

    def acked(self, probe_id: str, when: float) -> None:
        self.acked_at[probe_id] = when
        self.seen_at[probe_id] = {}
        for ids in self.pending.values():
            ids.add(probe_id)

    @property
    def outstanding(self) -> int:
        return sum(len(ids) for ids in self.pending.values())

    def lags(self) -> list[float]:
        """Seconds from ack to seen on the last instance, for every write seen on all of them."""
        want = len(self.instances)
        return [max(seen.values()) - self.acked_at[probe] for probe, seen in self.seen_at.items() if len(seen) == want]

    @property
    def unseen(self) -> int:
        want = len(self.instances)
        return sum(1 for seen in self.seen_at.values() if len(seen) < want)

    async def poll(
        self, session: aiohttp.ClientSession, endpoint: Endpoint, stop: asyncio.Event, interval: float
    ) -> None:
        """Until `stop` is set and nothing is pending on this instance."""
        pending = self.pending[endpoint.name]
        url = endpoint.url("get")
        while not (stop.is_set() and not pending):
            if pending:
                asked = list(pending)[:MAX_IDS_PER_POLL]
                try:
                    status, body = await post(session, url, get_ids_body(asked))
                except aiohttp.ClientError:
                    status, body = 0, b""
                now = time.perf_counter()
                self.polls += 1
                if status == 200:
                    for probe in orjson.loads(body)["ids"]:
                        if probe in pending:
                            pending.discard(probe)
                            self.seen_at[probe][endpoint.name] = now
                else:
                    self.poll_errors += 1
            await asyncio.sleep(interval)
