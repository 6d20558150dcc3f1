"""Forward one request to one instance. The only place that speaks HTTP to Chroma servers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from ..errors import InstanceError

# Headers that describe one hop, not the request: never forwarded in either direction.
HOP_HEADERS = frozenset({
    "host", "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
    "transfer-encoding", "upgrade", "content-length", "accept-encoding", "content-encoding", "date", "server",
})
# Client headers kept with a logged write, so the applier sends them to every instance (auth included).
LOGGED_HEADERS = frozenset({"authorization", "x-chroma-token", "content-type", "x-chroma-tenant"})


@dataclass(frozen=True)
class Upstream:
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def forwardable(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in HOP_HEADERS}


class InstanceClient:
    def __init__(self, request_timeout: float, pool_size: int = 256) -> None:
        self._timeout = request_timeout
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=self._pool_size, limit_per_host=self._pool_size, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent", "Accept-Encoding")
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        instance: str,
        method: str,
        path: str,
        *,
        query: str = "",
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        timeout: float | None = None,
    ) -> Upstream:
        assert self._session is not None, "InstanceClient.start() was not called"
        url = f"{instance}{path}?{query}" if query else f"{instance}{path}"
        try:
            async with self._session.request(
                method,
                aiohttp.client.URL(url, encoded=True),
                data=body or None,
                headers=forwardable(headers or {}),
                timeout=aiohttp.ClientTimeout(total=timeout or self._timeout),
                allow_redirects=False,
            ) as response:
                data = await response.read()
                return Upstream(response.status, forwardable(response.headers), data)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise InstanceError(instance, f"{type(exc).__name__}: {exc}", retryable=True) from exc
