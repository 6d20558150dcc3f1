"""The dashboard in headless Chromium (Debian's `chromium` package), driven over the DevTools protocol: it renders
the instances and the charts with no console errors and no Content-Security-Policy violation under the policy it is
served with (which does block an injected script), and a screenshot is saved to artifacts/dashboard.png."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import chromadb
import httpx
import pytest

from chroma_ha.local_cluster import ChromaServer
from tests.harness import GatewayProcess

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
    "--window-size=1400,1150",
    "--hide-scrollbars",
)
# Runs before any script of the page (DevTools' own scripts are not subject to the page's policy): every violation
# the policy reports is kept where the test can read it.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", e => window.__violations.push(
    {directive: e.effectiveDirective, blocked: e.blockedURI, sample: e.sample}));
"""


class DevTools:
    """A page of a headless Chromium, over the DevTools protocol's websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for frame in self._ws:
            message = json.loads(frame.data)
            if "id" in message and message["id"] in self._waiting:
                self._waiting.pop(message["id"]).set_result(message)
            elif "method" in message:
                self.events.append(message)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = future
        await self._ws.send_json({"id": call_id, "method": method, "params": params})
        answer = await asyncio.wait_for(future, 30)
        assert "error" not in answer, answer
        return answer["result"]

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def errors(self) -> list[str]:
        found = []
        for event in self.events:
            params = event.get("params", {})
            if event["method"] == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                found.append(f"console.{params['type']}: {params['args']}")
            elif event["method"] == "Runtime.exceptionThrown":
                found.append(f"exception: {params['exceptionDetails']}")
            elif event["method"] == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(f"log: {params['entry']['text']}")
        return found

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@contextlib.asynccontextmanager
async def headless_page(profile: Path) -> AsyncIterator[DevTools]:
    browser = subprocess.Popen(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            assert browser.poll() is None, "chromium exited"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            await asyncio.sleep(0.1)
        port = port_file.read_text().split()[0]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as answer:
                targets = await answer.json(content_type=None)
            page = next(t for t in targets if t["type"] == "page")
            async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=64 * 2**20) as ws:
                tools = DevTools(ws)
                for domain in ("Runtime", "Log", "Page"):
                    await tools.send(f"{domain}.enable")
                try:
                    yield tools
                finally:
                    await tools.close()
    finally:
        browser.kill()
        browser.wait(10)


@pytest.fixture
def busy_gateway(gateway_with: Callable[..., GatewayProcess], chroma_pair: list[ChromaServer]) -> GatewayProcess:
    """A gateway with some history: writes, then an instance killed while more writes wait for it."""
    gateway = gateway_with({"CHROMA_HA_MONITOR_INTERVAL": "0.25"})
    col = chromadb.HttpClient(host="127.0.0.1", port=gateway.port).create_collection("board", embedding_function=None)
    for n in range(10):
        col.add(ids=[f"a{n}-{k}" for k in range(20)], embeddings=[[float(n), float(k)] for k in range(20)])
        time.sleep(0.1)
    chroma_pair[1].kill()
    for n in range(10):
        col.add(ids=[f"b{n}-{k}" for k in range(20)], embeddings=[[float(n), float(k)] for k in range(20)])
        time.sleep(0.15)
    return gateway


async def test_the_dashboard_renders_instances_and_charts_without_errors(
    tmp_path: Path, busy_gateway: GatewayProcess, chroma_pair: list[ChromaServer]
) -> None:
    gateway, down = busy_gateway, chroma_pair[1].url
    served = httpx.get(f"{gateway.url}/dashboard", timeout=10)
    policy = served.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy and "unsafe-inline" not in policy
    assert served.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(f"{gateway.url}/dashboard/data", timeout=10).headers["x-content-type-options"] == "nosniff"
    async with headless_page(tmp_path / "chromium-profile") as page:
        await page.send("Page.addScriptToEvaluateOnNewDocument", source=RECORD_VIOLATIONS)
        await page.send("Page.navigate", url=f"{gateway.url}/dashboard")
        deadline = time.monotonic() + 30
        while await page.evaluate("document.body && document.body.dataset.ready") != "1":
            assert time.monotonic() < deadline, f"the dashboard never rendered: {page.errors()}"
            await asyncio.sleep(0.2)
        await asyncio.sleep(3.5)  # one self-refresh more
        shown = await page.evaluate("""(() => ({
            status: document.getElementById('status').textContent,
            rows: [...document.querySelectorAll('#instances tbody tr')].map(
                tr => ({url: tr.dataset.instance, up: tr.dataset.up})),
            charts: [...document.querySelectorAll('svg.chart')].map(svg => ({
                id: svg.id,
                lines: [...svg.querySelectorAll('polyline')].map(
                    p => p.getAttribute('points').split(' ').filter(Boolean).length)})),
            alerts: [...document.querySelectorAll('#alerts li')].map(li => li.textContent),
            external: [...document.querySelectorAll('script[src], link[rel=stylesheet], img[src]')].length,
        }))()""")
        png = await page.send("Page.captureScreenshot", format="png")
        errors = page.errors()
        violations = await page.evaluate("window.__violations")
        # the policy is enforced: a script injected into the page is refused, and reported
        await page.evaluate("""(() => { const s = document.createElement('script');
            s.textContent = 'window.__injected = 1'; document.body.appendChild(s); })()""")
        await asyncio.sleep(0.5)
        injected = await page.evaluate("window.__injected === 1")
        refused = await page.evaluate("window.__violations")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "dashboard.png").write_bytes(base64.b64decode(png["data"]))
    assert errors == []
    assert violations == []
    assert not injected and [v["directive"] for v in refused] == ["script-src-elem"]
    assert shown["external"] == 0
    assert shown["status"] == "degraded"
    assert {r["url"]: r["up"] for r in shown["rows"]} == {chroma_pair[0].url: "true", down: "false"}
    charts = {c["id"]: c["lines"] for c in shown["charts"]}
    assert set(charts) == {"chart-lag", "chart-backlog", "chart-throughput", "chart-resources"}
    assert len(charts["chart-lag"]) == len(charts["chart-backlog"]) == 2  # one line per instance
    assert all(len(lines) >= 2 and min(lines) > 2 for lines in charts.values())
    assert any(down in text and "down" in text for text in shown["alerts"])
