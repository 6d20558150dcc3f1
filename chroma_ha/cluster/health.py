"""Instance health: active heartbeat probes plus passive marks from real traffic, with rise/fall counts.

`HealthState` is the pure state machine (like a load balancer's): an up instance goes down after `fall`
consecutive failures, a down one comes up after `rise` consecutive successes. `HealthMonitor` probes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import InstanceError
from ..upstream.paths import HEARTBEAT
from ..upstream.transport import Transport

log = logging.getLogger(__name__)


@dataclass
class HealthState:
    rise: int
    fall: int
    up: bool = True
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    last_check: float = 0.0
    last_error: str = ""
    requests: int = 0
    failures: int = 0
    outstanding: int = 0  # requests sent to the instance and not yet answered, for least-outstanding balancing
    changed_at: float = field(default_factory=time.time)

    def success(self) -> bool:
        """Record a success; True when this flips the instance up."""
        self.requests += 1
        self.consecutive_failures = 0
        self.consecutive_successes += 1
        if not self.up and self.consecutive_successes >= self.rise:
            self.up, self.changed_at = True, time.time()
            return True
        return False

    def failure(self, error: str) -> bool:
        """Record a failure; True when this flips the instance down."""
        self.requests += 1
        self.failures += 1
        self.last_error = error
        self.consecutive_successes = 0
        self.consecutive_failures += 1
        if self.up and self.consecutive_failures >= self.fall:
            self.up, self.changed_at = False, time.time()
            return True
        return False

    def request_started(self) -> None:
        self.outstanding += 1

    def request_ended(self) -> None:
        self.outstanding -= 1

    @property
    def success_rate(self) -> float:
        return 1.0 if self.requests == 0 else (self.requests - self.failures) / self.requests


Listener = Callable[[str, bool], None]


class HealthMonitor:
    def __init__(
        self,
        instances: tuple[str, ...],
        client: Transport,
        *,
        interval: float,
        timeout: float,
        rise: int,
        fall: int,
    ) -> None:
        self.states = {i: HealthState(rise=rise, fall=fall) for i in instances}
        self._rise, self._fall = rise, fall
        self._client = client
        self._interval = interval
        self._timeout = timeout
        self._listeners: list[Listener] = []

    def watch(self, instance: str) -> None:
        """Probe a new member too; it starts up, as every instance does, until probes say otherwise."""
        self.states.setdefault(instance, HealthState(rise=self._rise, fall=self._fall))

    def state_of(self, instance: str) -> HealthState:
        """The instance's state; for one forgotten while a request to it was being chosen, a detached one."""
        return self.states.get(instance) or HealthState(rise=self._rise, fall=self._fall)

    def forget(self, instance: str) -> None:
        """A removed member: no more probes; marks from requests still under way to it are ignored."""
        self.states.pop(instance, None)

    def on_change(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def off_change(self, listener: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def is_up(self, instance: str) -> bool:
        state = self.states.get(instance)
        return state is not None and state.up

    def up_instances(self) -> list[str]:
        return [i for i, s in self.states.items() if s.up]

    def mark_success(self, instance: str) -> None:
        state = self.states.get(instance)
        if state is not None and state.success():
            self._notify(instance, True)

    def mark_failure(self, instance: str, error: str) -> None:
        state = self.states.get(instance)
        if state is not None and state.failure(error):
            self._notify(instance, False)

    def _notify(self, instance: str, up: bool) -> None:
        log.warning("instance %s is %s", instance, "up" if up else "down")
        for listener in self._listeners:
            listener(instance, up)

    async def probe(self, instance: str) -> None:
        try:
            result = await self._client.request(instance, "GET", HEARTBEAT, timeout=self._timeout)
        except InstanceError as exc:
            self.mark_failure(instance, str(exc))
        else:
            if result.ok:
                self.mark_success(instance)
            else:
                self.mark_failure(instance, f"heartbeat answered {result.status}")
        finally:
            # Stamped with its outcome, so a reader never sees a check's time before its result.
            if instance in self.states:  # not forgotten meanwhile
                self.states[instance].last_check = time.time()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.gather(*(self.probe(i) for i in list(self.states)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval)
