"""The nemesis: faults on a schedule drawn from a seeded RNG, one at a time, each recorded with its window.

After each fault it waits (as long as it takes) for every instance to apply the log up to the head it saw when
the fault ended: the next fault then never finds the only up-to-date instance already gone (with two instances, a
wiped one still being rebuilt while the other is killed would leave no instance that holds the acknowledged writes,
which no gateway can serve through). How long that took is in the fault's record.

Kinds come in rounds, every kind once per round in a seeded order. The same seed draws the same schedule (kinds,
targets, durations, pauses); what the cluster does under it varies
with timing, as any run on real processes does.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import threading
from collections.abc import Callable, Iterator, Sequence

from .cluster import TortureCluster
from .history import Fault, History
from .proxy import CLEAN, NetFaults

SQLITE_FAULTS = ("instance_kill", "instance_wipe", "instance_pause", "gateway_kill", "net_slow", "net_lossy")
POSTGRES_FAULTS = (*SQLITE_FAULTS, "postgres_restart")
RECOVERY_POLL_S = 5.0
HEAL_TIMEOUT_S = 120.0  # how long stopping waits for the fault under way to be healed


def fault_kinds(store: str) -> tuple[str, ...]:
    return POSTGRES_FAULTS if store == "postgres" else SQLITE_FAULTS


class Nemesis:
    def __init__(
        self,
        cluster: TortureCluster,
        history: History,
        *,
        seed: int,
        kinds: Sequence[str],
        quiet: tuple[float, float] = (2.0, 5.0),
        length: tuple[float, float] = (2.0, 6.0),
    ) -> None:
        self._cluster = cluster
        self._history = history
        self._rng = random.Random(f"{seed}-nemesis")
        self._kinds = list(kinds)
        self._quiet = quiet
        self._length = length
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nemesis", daemon=True)
        self.errors: list[str] = []
        self.every_kind_done = threading.Event()  # set once each kind has been injected and healed at least once

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ends the schedule; the fault under way is healed first."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(HEAL_TIMEOUT_S)

    def _schedule(self) -> Iterator[str]:
        """Kinds in rounds, each round every kind once in a seeded order: a short run still sees every kind."""
        while True:
            deck = list(self._kinds)
            self._rng.shuffle(deck)
            yield from deck

    def _run(self) -> None:
        done: set[str] = set()
        for kind in self._schedule():
            if self._stop.wait(self._rng.uniform(*self._quiet)):
                return
            length = self._rng.uniform(*self._length)
            try:
                self._inject(kind, length)
            except Exception as exc:  # a fault that could not be injected or healed is reported, not hidden
                self.errors.append(f"{kind}: {type(exc).__name__}: {exc}")
                return
            done.add(kind)
            if done >= set(self._kinds):
                self.every_kind_done.set()

    def _inject(self, kind: str, length: float) -> None:
        cluster = self._cluster
        instance = self._rng.randrange(len(cluster.servers))
        gateway = self._rng.randrange(len(cluster.gateways))
        actions: dict[str, tuple[str, Callable[[], dict[str, object]], Callable[[], None]]] = {
            "instance_kill": (f"instance-{instance}", lambda: self._kill(instance), lambda: self._restart(instance)),
            "instance_wipe": (f"instance-{instance}", lambda: self._wipe(instance), lambda: self._restart(instance)),
            "instance_pause": (
                f"instance-{instance}",
                lambda: self._signal(instance, signal.SIGSTOP),
                lambda: self._resume(instance),
            ),
            "gateway_kill": (
                f"gateway-{gateway}",
                lambda: self._kill_gateway(gateway),
                lambda: cluster.restart_gateway(gateway),
            ),
            "postgres_restart": ("store", self._stop_store, self._start_store),
            "net_slow": (
                "instance-0",
                lambda: self._net(NetFaults(latency=self._rng.uniform(0.05, 0.4))),
                self._heal_net,
            ),
            "net_lossy": (
                "instance-0",
                lambda: self._net(NetFaults(drop=self._rng.uniform(0.05, 0.3))),
                self._heal_net,
            ),
        }
        target, begin, heal = actions[kind]
        if kind == "gateway_kill":
            length = self._rng.uniform(0.0, 1.0)  # the gateway is down for this long, then as long as it takes to start
        fault = Fault(kind, target, self._history.now())
        try:
            fault.detail = begin()
            self._stop.wait(length)
        finally:
            try:
                heal()
            finally:
                fault.end = self._history.now()
                fault.detail["length_s"] = round(fault.end - fault.start, 3)
                recovered = self._wait_recovered()
                fault.detail["recovered_after_s"] = round(self._history.now() - fault.end, 3) if recovered else None
                self._history.fault(fault)

    def _wait_recovered(self) -> bool:
        """Until every instance has applied the log up to the head it has now, however long that takes (False if
        the run stops first): a fault injected into a cluster still catching up could take the only instance
        that holds the acknowledged writes, which no gateway can serve through, and would prove nothing."""
        head = self._cluster.head()
        while not self._stop.is_set():
            if head is None:
                head = self._cluster.head()
                self._stop.wait(RECOVERY_POLL_S)
            elif self._cluster.wait_caught_up(RECOVERY_POLL_S, head):
                return True
        return False

    def _kill(self, n: int) -> dict[str, object]:
        self._cluster.servers[n].kill()
        return {}

    def _wipe(self, n: int) -> dict[str, object]:
        server = self._cluster.servers[n]
        server.kill()
        shutil.rmtree(server.data_dir, ignore_errors=True)
        return {"wiped": str(server.data_dir)}

    def _restart(self, n: int) -> None:
        self._cluster.servers[n].start()

    def _signal(self, n: int, sig: signal.Signals) -> dict[str, object]:
        process = self._cluster.servers[n].process
        assert process is not None
        os.killpg(process.pid, sig)
        return {}

    def _resume(self, n: int) -> None:
        self._signal(n, signal.SIGCONT)

    def _kill_gateway(self, n: int) -> dict[str, object]:
        self._cluster.gateways[n].kill()
        return {}

    def _stop_store(self) -> dict[str, object]:
        assert self._cluster.postgres is not None, "postgres_restart needs the PostgreSQL store"
        self._cluster.postgres.stop()
        return {}

    def _start_store(self) -> None:
        assert self._cluster.postgres is not None
        self._cluster.postgres.start()

    def _net(self, faults: NetFaults) -> dict[str, object]:
        self._cluster.proxy.set_faults(faults)
        return {"latency_s": round(faults.latency, 3), "drop": round(faults.drop, 3)}

    def _heal_net(self) -> None:
        self._cluster.proxy.set_faults(CLEAN)
