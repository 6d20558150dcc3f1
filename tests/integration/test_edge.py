"""The front door, tried as a hostile or merely unusual client would, against a gateway process in front of two real
Chroma servers: each behaviour found at the edge is a test here (the HTTP server's own rules are tested in
test_http_server.py and test_http_in_*.py, the instance client's in test_instance_client.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time

import chromadb
import httptools
import httpx
import orjson
import psutil

from chroma_ha.local_cluster import ChromaServer
from tests.harness import GatewayProcess, run_cli, wait_drained, wait_until_identical

DB = "/api/v2/tenants/default_tenant/databases/default_database"


def exchange(port: int, data: bytes, timeout: float = 15.0) -> list[tuple[int, bytes]]:
    """Send `data` on one connection and read until the gateway closes it: (status, body) of each final answer,
    interim (1xx) answers left out."""
    raw = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        while chunk := sock.recv(65536):
            raw += chunk
    return [(status, body) for status, body in parse_answers(raw) if status >= 200]


def parse_answers(raw: bytes) -> list[tuple[int, bytes]]:
    found: list[tuple[int, bytes]] = []

    class Answers:
        def on_message_begin(self) -> None:
            found.append((0, b""))

        def on_body(self, body: bytes) -> None:
            found[-1] = (found[-1][0], found[-1][1] + body)

        def on_message_complete(self) -> None:
            found[-1] = (parser.get_status_code(), found[-1][1])

    parser = httptools.HttpResponseParser(Answers())
    parser.feed_data(raw)
    return found


def request(method: str, target: str, body: bytes = b"", *headers: str) -> bytes:
    head = [f"{method} {target} HTTP/1.1", "host: gateway", f"content-length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def collection(gateway: GatewayProcess, name: str) -> str:
    created = httpx.post(f"{gateway.url}{DB}/collections", json={"name": name}, timeout=10)
    assert created.status_code == 200, created.text
    return str(created.json()["id"])


def test_a_read_sent_with_expect_continue_gets_its_real_answer(gateway: GatewayProcess) -> None:
    docs = collection(gateway, "docs")
    body = orjson.dumps({"include": []})
    wire = request("POST", f"{DB}/collections/{docs}/get", body, "expect: 100-continue", "connection: close")
    [(status, answer)] = exchange(gateway.port, wire)
    assert status == 200 and orjson.loads(answer)["ids"] == []


def test_a_write_with_a_fragment_is_refused_and_reaches_no_instance(
    gateway: GatewayProcess, chroma_pair: list[ChromaServer]
) -> None:
    head = gateway.wal_status()["head"]
    wire = request("POST", "/api/v2/tenants/default_tenant/databases#x", b'{"name": "fragged"}', "connection: close")
    [(status, _)] = exchange(gateway.port, wire)
    assert status == 400
    assert gateway.wal_status()["head"] == head
    for server in chroma_pair:
        assert httpx.get(f"{server.url}/api/v2/tenants/default_tenant/databases/fragged").status_code == 404


def test_the_gateways_own_tenant_cannot_be_touched_through_chromas_api(
    gateway: GatewayProcess, chroma_pair: list[ChromaServer]
) -> None:
    marker = "/api/v2/tenants/chroma_ha_system/databases/system/collections/incarnation"
    refused = httpx.delete(f"{gateway.url}{marker}", timeout=10)
    assert refused.status_code == 403 and refused.json()["error"] == "AuthorizationError"
    assert httpx.post(f"{gateway.url}/api/v2/tenants", json={"name": "chroma_ha_system"}).status_code == 403
    for server in chroma_pair:
        assert httpx.get(f"{server.url}{marker}").status_code == 200


def test_a_tenant_named_with_snowmen_is_replicated_and_verified(
    gateway: GatewayProcess, chroma_pair: list[ChromaServer]
) -> None:
    admin = chromadb.AdminClient(
        chromadb.Settings(
            chroma_api_impl="chromadb.api.fastapi.FastAPI",
            chroma_server_host="127.0.0.1",
            chroma_server_http_port=gateway.port,
        )
    )
    admin.create_tenant("☃☃☃")
    admin.create_database("snow", tenant="☃☃☃")
    client = chromadb.HttpClient(host="127.0.0.1", port=gateway.port, tenant="☃☃☃", database="snow")
    col = client.create_collection("docs", embedding_function=None)
    col.add(ids=["a", "b"], embeddings=[[1.0, 2.0], [3.0, 4.0]])
    assert col.count() == 2
    wait_drained(gateway.url)
    for server in chroma_pair:
        assert httpx.get(f"{server.url}/api/v2/tenants/%E2%98%83%E2%98%83%E2%98%83").json()["name"] == "☃☃☃"
    verified = run_cli(gateway, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "Traceback" not in verified.stderr


def test_a_body_naming_a_field_twice_leaves_the_instances_alike(
    gateway: GatewayProcess, chroma_pair: list[ChromaServer]
) -> None:
    docs = collection(gateway, "docs")
    wait_drained(gateway.url)
    second = chroma_pair[1]
    assert second.process is not None
    os.kill(second.process.pid, signal.SIGSTOP)  # it will apply both adds at once, merged into one call
    try:
        twice = b'{"ids":["d1"],"embeddings":[[1,2]],"ids":["d1"]}'
        added = httpx.post(
            f"{gateway.url}{DB}/collections/{docs}/add",
            content=twice,
            timeout=10,
            headers={"content-type": "application/json"},
        )
        assert added.status_code == 201, added.text
        other = {"ids": ["d2"], "embeddings": [[3.0, 4.0]]}
        assert httpx.post(f"{gateway.url}{DB}/collections/{docs}/add", json=other, timeout=10).status_code == 201
    finally:
        os.kill(second.process.pid, signal.SIGCONT)
    status = wait_drained(gateway.url)
    assert status["divergence_count"] == 0
    states = wait_until_identical([s.url for s in chroma_pair])
    assert set(states["docs"]["records"]) == {"d1", "d2"}


def test_a_client_that_pipelines_large_requests_and_never_reads_cannot_grow_the_gateway(
    gateway: GatewayProcess,
) -> None:
    docs = collection(gateway, "docs")
    process = psutil.Process(gateway.pid)
    before = process.memory_info().rss
    big = orjson.dumps({"ids": [f"id-{n:07d}" for n in range(300_000)], "include": []})  # about 4 MiB
    wire = request("POST", f"{DB}/collections/{docs}/get", big)
    sender = socket.create_connection(("127.0.0.1", gateway.port))
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)

    def flood() -> None:
        try:
            for _ in range(120):  # 480 MiB if the gateway read it all
                sender.sendall(wire)
        except OSError:
            pass  # the gateway closed the connection: fine

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    peak = before
    deadline = time.monotonic() + 20
    while thread.is_alive() and time.monotonic() < deadline:
        started = time.monotonic()
        assert httpx.get(f"{gateway.url}/health", timeout=5).status_code == 200
        assert time.monotonic() - started < 1.0
        peak = max(peak, process.memory_info().rss)
        time.sleep(0.2)
    sender.close()
    thread.join(10)
    # What the gateway holds stays bounded however much the client sends. (How much it takes in before it stops
    # reading depends on how fast it answers: its small answers fit in the client's receive buffer by the
    # thousand, so a fast gateway answers all 120 requests in time. Memory is the claim, not the count.)
    assert peak - before < 150 * 1024 * 1024


def test_a_huge_header_is_refused_as_soon_as_the_head_passes_its_limit(gateway: GatewayProcess) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(b"GET /api/v2/heartbeat HTTP/1.1\r\nhost: gateway\r\nx-big: ")
        sent, chunk = 0, b"a" * 65536
        sock.settimeout(0.05)
        answer = b""
        while sent < 16 << 20 and not answer:
            try:
                sock.sendall(chunk)
                sent += len(chunk)
                answer = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break  # closed on us: the answer is waiting to be read
        sock.settimeout(5)
        with contextlib.suppress(OSError):
            answer += sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 431")
    assert sent < 1 << 20  # refused while the header was still arriving, not after all 16 MiB
