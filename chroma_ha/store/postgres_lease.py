"""The writer lease of a PostgreSQL store: while this store holds it, no other store appends to the log.

The promise (`sole_appender()` returns an epoch): every entry committed since the epoch began was appended through
this store. It holds because of two rules, both enforced by the database under the lease row's lock:
- an append of another store commits only when the lease is free or expired (`note_appender`, in its transaction);
- the holder stops trusting its lease before either can happen: on its own clock it trusts a renewal until
  `TTL - MARGIN` seconds after it *sent* it, while the database keeps it for `TTL` seconds after it *ran* it; and
  it gives the lease up (`release`) only after it stopped trusting it.
An epoch begins at every take (never at a renewal, which succeeds only while the lease never lapsed): a reader
that learned the log's head under an earlier epoch must learn it again.

Another store that must append while the lease is held revokes it (a flag, and a notification the holder hears
on its LISTEN connection) and waits for the release, or for the expiry when the holder is gone: a SIGKILLed
holder delays the first append of another gateway by `TTL` at most. A lost notification costs at most one
renewal interval: a revoked lease is not renewed.

Only the store that appended last takes the lease, once no other has appended beside it for `QUIET` seconds, so
gateways that all write leave it free and each proves freshness by asking the head.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import suppress
from typing import Any

from ..errors import StoreError
from ..pulse import Pulse
from .base import load_queries

Q = load_queries("postgres")

LEASE_TTL_S = 2.0  # how long the database keeps a lease after its last renewal
LEASE_MARGIN_S = 0.5  # how much sooner the holder stops trusting it, on its own clock
# Every renewal costs an idle gateway about 1.3 ms of CPU on a 2-core machine; a renewal may take up to
# TTL - MARGIN - RENEW_INTERVAL (0.5 s) before the holder stops trusting its lease, and then only reads slow down.
RENEW_INTERVAL_S = 1.0
QUIET_S = 2.0  # a lease is taken only by a store no other has appended beside for this long
RELEASE_POLL_S = 0.05
MIN_TAKE_PAUSE_S = 0.05  # how often a revoking store looks at the lease when no notification came
LEASE_CHANNEL = "chroma_ha_lease"
REVOKE = "revoke:"
RELEASED = "released:"

logger = logging.getLogger(__name__)

Fetch = Callable[[str, Sequence[Any] | Mapping[str, Any] | None], Awaitable[tuple[Any, ...] | None]]
Run = Callable[[Sequence[tuple[str, Sequence[Any] | Mapping[str, Any] | None]]], Awaitable[None]]


class WriterLease:
    """This store's side of the lease: held, renewed, revoked and released; and the wait of a revoking store."""

    def __init__(
        self,
        owner: str,
        fetch: Fetch,
        run: Run,
        *,
        ttl: float = LEASE_TTL_S,
        margin: float = LEASE_MARGIN_S,
        renew_interval: float = RENEW_INTERVAL_S,
        quiet: float = QUIET_S,
    ) -> None:
        if not 0 <= margin < ttl or renew_interval >= ttl - margin:
            raise ValueError("writer lease: need 0 <= margin < ttl and renew_interval < ttl - margin")
        self.owner = owner
        self._fetch = fetch
        self._run = run
        self._ttl, self._margin, self._renew, self._quiet = ttl, margin, renew_interval, quiet
        self._epoch = 0
        self._held = False  # taken and not yet released, as far as this store knows
        self._trusted_until = 0.0  # time.monotonic(); 0 while not trusted
        self._wake = asyncio.Event()
        self._changed = Pulse()  # another store released the lease
        self._task: asyncio.Task[None] | None = None
        self.revocations = 0  # how many times this store had to revoke another's lease to append

    def sole_appender(self) -> int | None:
        if self._trusted_until and time.monotonic() < self._trusted_until:
            return self._epoch
        return None

    def start_holding(self) -> None:
        """After this store's first append: from now on it takes the lease when it may and keeps it."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._hold(), name="postgres-writer-lease")

    async def close(self) -> None:
        """Stop trusting, stop renewing, give the lease up (another gateway need not wait for it to expire)."""
        self._distrust()
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._held:
            with suppress(StoreError):
                await asyncio.wait_for(self._release(), self._margin)

    # --- what the LISTEN connection hears -------------------------------------------------------------------

    def heard(self, payload: str) -> None:
        if payload == REVOKE + self.owner:
            self._distrust()  # at once, before anything else runs: the release comes after
            self._wake.set()
        elif payload.startswith(RELEASED):
            self._changed.fire()

    def listener_restarted(self) -> None:
        """Notifications sent while nobody listened are lost: a revocation among them must not go unheeded."""
        self._wake.set()
        self._changed.fire()

    # --- holding --------------------------------------------------------------------------------------------

    def _distrust(self) -> None:
        self._trusted_until = 0.0

    async def _hold(self) -> None:
        while True:
            try:
                await self._hold_once()
            except StoreError as exc:
                self._distrust()
                logger.debug("writer lease: the store failed, not trusted until it answers: %s", exc)
            except Exception:
                self._distrust()
                logger.exception("writer lease: holding failed; retrying")
            self._wake.clear()
            # Not holding it: try again once the quiet time may have passed, if that comes before a renewal would.
            pause = self._renew if self._held else max(MIN_TAKE_PAUSE_S, min(self._renew, self._quiet))
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)

    async def _hold_once(self) -> None:
        params = {"me": self.owner, "ttl": self._ttl, "quiet": self._quiet}
        sent = time.monotonic()
        if self._held and self._trusted_until and await self._fetch(Q["renew_writer_lease"], params):
            self._trusted_until = sent + self._ttl - self._margin
            return
        self._distrust()
        if self._held:
            await self._release()  # revoked, expired, or distrusted by a failure: a fresh take starts over
            return  # not straight back: the store it was released for appends first
        sent = time.monotonic()
        if await self._fetch(Q["take_writer_lease"], params):
            self._held = True
            self._epoch += 1
            self._trusted_until = sent + self._ttl - self._margin
            logger.info("writer lease taken (epoch %d): reads prove their freshness without the store", self._epoch)

    async def _release(self) -> None:
        await self._run(
            [(Q["release_writer_lease"], {"me": self.owner}), (Q["notify_lease"], (RELEASED + self.owner,))]
        )
        self._held = False
        logger.info("writer lease released")

    # --- revoking another's -------------------------------------------------------------------------------

    async def revoke(self) -> None:
        """Ask the holder to give the lease up, and wait until it did or the lease expired, or until the lease is
        held unrevoked again (taken by yet another store, say): the append that called this then tries again."""
        self.revocations += 1
        row = await self._fetch(Q["revoke_writer_lease"], {"me": self.owner})
        if row is None:
            return  # released or expired meanwhile
        holder = str(row[0])
        await self._run([(Q["notify_lease"], (REVOKE + holder,))])
        while True:
            current = await self._fetch(Q["writer_lease_holder"], None)
            if current is None or current[0] != holder or not current[1]:
                return
            await self._changed.wait(RELEASE_POLL_S)
