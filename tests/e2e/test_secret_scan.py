"""Secret scanning: a real `chroma-ha serve` with every kind of secret in force (a PostgreSQL DSN with a password
that the server really asks for, PGPASSWORD, instance URLs with userinfo, instance header secrets, a Slack and a
generic webhook pointing at a local receiver, an admin token and a data token) is driven through every admin route,
the dashboard and its data, error answers and every CLI command that talks to it or its store; none of the secrets
is in any answer, any output, the gateway's log or the alerts the receiver got. A store that refuses the password
at start stops the gateway with a message naming the store without it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chromadb
import httpx
import orjson
import psycopg
import pytest
from aiohttp import web
from psycopg.conninfo import conninfo_to_dict

from chroma_ha.local_cluster import ChromaServer, free_port
from chroma_ha.local_postgres import create_database, stoppable_postgres
from tests.harness import GatewayProcess, serving_in_thread, wait_for

PG_PASSWORD = "pgScanSecret5d1e8b72"
INSTANCE_USER, INSTANCE_PASSWORD = "scan-user", "instScanSecret0c9a3f61"
HEADER_SHARED = "hdrScanSecret77b2e4d0"
HEADER_ONE = "hdrOneScanSecret1f0c3e9a"
SLACK_PATH = "services/T0SCAN/B0SCAN/slackScanSecret9f3b2c1d"
WEBHOOK_KEY = "hookScanSecret6e2a0d8c"
ADMIN_TOKEN = "adminScanSecret3b8f1e07"
DATA_TOKEN = "dataScanSecret4c2e9f1a"
WRONG_PASSWORD = "wrongScanSecret8a1b7c3d"
SECRETS = (
    PG_PASSWORD,
    INSTANCE_PASSWORD,
    base64.b64encode(f"{INSTANCE_USER}:{INSTANCE_PASSWORD}".encode()).decode(),  # as sent, Basic
    HEADER_SHARED,
    HEADER_ONE,
    SLACK_PATH,
    "slackScanSecret9f3b2c1d",
    WEBHOOK_KEY,
    ADMIN_TOKEN,
    DATA_TOKEN,
    WRONG_PASSWORD,
)
PROVIDER = "chromadb.auth.token_authn.TokenAuthClientProvider"


class Receiver:
    """The Slack and generic webhooks: every POST, as (path with query, body)."""

    def __init__(self) -> None:
        self.got: list[tuple[str, str]] = []
        self.app = web.Application()
        self.app.router.add_post("/{tail:.*}", self.take)

    async def take(self, request: web.Request) -> web.Response:
        self.got.append((request.path_qs, await request.text()))
        return web.Response(text="ok")


@contextlib.contextmanager
def password_postgres(base: Path) -> Iterator[tuple[str, str]]:
    """A PostgreSQL that asks every connection for the password (scram-sha-256, the socket included): the DSN
    of a database on it, with the password, and the socket folder."""
    with stoppable_postgres(base) as server:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(f"ALTER USER postgres PASSWORD '{PG_PASSWORD}'")
            hba = Path(conn.execute("SHOW hba_file").fetchone()[0])  # type: ignore[index]
            hba.write_text(hba.read_text().replace("trust", "scram-sha-256"))
            create_database(server.dsn, "scan")
            conn.execute("SELECT pg_reload_conf()")
        socket = str(conninfo_to_dict(server.dsn)["host"])
        with pytest.raises(psycopg.OperationalError):  # the password is really asked for now
            psycopg.connect(server.dsn, connect_timeout=5).close()
        yield f"postgresql://postgres:{PG_PASSWORD}@/scan?host={socket}", socket


def command(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`chroma-ha <args>` with exactly these CHROMA_HA_* variables (and PGPASSWORD), no terminal."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CHROMA_HA_", "PG"))}
    return subprocess.run(
        [sys.executable, "-m", "chroma_ha", *args],
        env={**base, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def data_client(port: int) -> chromadb.ClientAPI:
    settings = chromadb.Settings(chroma_client_auth_provider=PROVIDER, chroma_client_auth_credentials=DATA_TOKEN)
    return chromadb.HttpClient(host="127.0.0.1", port=port, settings=settings)


def test_no_secret_in_any_answer_output_log_or_alert(tmp_path: Path, chroma_pair: list[ChromaServer]) -> None:
    outputs: dict[str, str] = {}
    receiver = Receiver()
    pg_base = Path(tempfile.mkdtemp(prefix="chroma-ha-scan-pg-"))  # the server runs as another user: not tmp_path
    with password_postgres(pg_base) as (dsn, socket), serving_in_thread(receiver.app) as hooks:
        bare = [s.url for s in chroma_pair]
        with_userinfo = [u.replace("http://", f"http://{INSTANCE_USER}:{INSTANCE_PASSWORD}@") for u in bare]
        env = {
            "CHROMA_HA_INSTANCE_HEADERS": f"X-Scan-Key: {HEADER_SHARED},1=X-Scan-One: {HEADER_ONE}",
            "CHROMA_HA_SLACK_WEBHOOK": f"{hooks}/{SLACK_PATH}",
            "CHROMA_HA_ALERT_WEBHOOK": f"{hooks}/hook?key={WEBHOOK_KEY}",
            "CHROMA_HA_ADMIN_TOKEN": ADMIN_TOKEN,
            "CHROMA_HA_AUTH_TOKENS": f"scanner:{hashlib.sha256(DATA_TOKEN.encode()).hexdigest()}",
            "CHROMA_HA_ALERT_MIN_INTERVAL": "0",
            "CHROMA_HA_MONITOR_INTERVAL": "0.25",
            "PGPASSWORD": PG_PASSWORD,
            "CHROMA_HA_ARCHIVE_DIR": str(tmp_path / "scan-archive"),
            "CHROMA_HA_ARCHIVE_INTERVAL": "0.25",
        }
        gateway = GatewayProcess(with_userinfo, dsn, tmp_path / "gateway", env=env)
        try:
            gateway.start()
            drive(gateway, chroma_pair, receiver, outputs)
            drive_remote_commands(gateway, tmp_path, outputs)
            head = gateway.wait_drained()["head"]
            wait_for("every entry archived", lambda: archived_upto(tmp_path / "scan-archive"), 60,
                     until=lambda last: last >= head, ignoring=(FileNotFoundError,))  # fmt: skip
        finally:
            gateway.stop()
        outputs["gateway log"] = gateway.log_text()

        cli_env = {
            "CHROMA_HA_INSTANCES": ",".join(with_userinfo),
            "CHROMA_HA_INSTANCE_HEADERS": env["CHROMA_HA_INSTANCE_HEADERS"],
            "CHROMA_HA_ADMIN_TOKEN": ADMIN_TOKEN,
            "CHROMA_HA_SLACK_WEBHOOK": env["CHROMA_HA_SLACK_WEBHOOK"],
            "CHROMA_HA_ALERT_WEBHOOK": env["CHROMA_HA_ALERT_WEBHOOK"],
        }
        forms = {  # the DSN's password in each form libpq reads, and in the environment
            "userinfo": {"CHROMA_HA_STORE": dsn},
            "query": {"CHROMA_HA_STORE": f"postgresql://postgres@/scan?host={socket}&password={PG_PASSWORD}"},
            "environment": {"CHROMA_HA_STORE": f"postgresql://postgres@/scan?host={socket}", "PGPASSWORD": PG_PASSWORD},
        }
        for form, store in forms.items():
            verified = command({**cli_env, **store}, "verify", "--json", str(tmp_path / f"{form}.json"), cwd=tmp_path)
            assert verified.returncode == 0, verified.stdout + verified.stderr
            outputs[f"verify ({form})"] = verified.stdout + verified.stderr
            outputs[f"verify --json ({form})"] = (tmp_path / f"{form}.json").read_text()
        repaired = command({**cli_env, **forms["query"]}, "repair", "--dry-run", "--yes", cwd=tmp_path)
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr
        outputs["repair --dry-run"] = repaired.stdout + repaired.stderr
        backup = tmp_path / "scan-backup"
        backed = command({**cli_env, **forms["query"]}, "backup", "--to", str(backup), cwd=tmp_path)
        assert backed.returncode == 0, backed.stdout + backed.stderr
        outputs["backup"] = backed.stdout + backed.stderr
        for path in [*backup.rglob("*"), *(tmp_path / "scan-archive").rglob("*")]:  # entries carry no credential
            if path.is_file():
                outputs[f"backup file {path.relative_to(tmp_path)}"] = path.read_text(errors="replace")
        assert any("segments" in name for name in outputs)
        helps = (
            *("serve", "verify", "repair", "up", "check", "status", "wal", "bootstrap", "token", "torture", "bench"),
            *("backup", "restore", "instances"),
        )
        for args in (("--help",), *((name, "--help") for name in helps)):
            shown = command({**cli_env, **forms["userinfo"]}, *args, cwd=tmp_path)
            assert shown.returncode == 0, shown.stderr
            outputs[" ".join(args)] = shown.stdout + shown.stderr
        assert "--instance-header" in outputs["serve --help"]

        # a store that refuses the password: the gateway stops at start, naming the store without the password
        refused_store = dsn.replace(PG_PASSWORD, WRONG_PASSWORD)
        refused_env = {**cli_env, "CHROMA_HA_STORE": refused_store, "CHROMA_HA_PORT": str(free_port())}
        refused = command(refused_env, "serve", cwd=tmp_path)
        outputs["serve with a refused password"] = refused.stdout + refused.stderr
        assert refused.returncode != 0
        assert "cannot open the log store" in refused.stderr and "postgresql://postgres:***@/scan" in refused.stderr
        assert "password authentication failed" in refused.stderr

    outputs["alerts"] = "\n".join(body for _, body in receiver.got)  # (posted to the secret URLs, of course)
    leaks = {(name, secret) for name, text in outputs.items() for secret in SECRETS if secret in text}
    assert leaks == set()


def archived_upto(archive: Path) -> int:
    segments = orjson.loads((archive / "archive.json").read_bytes())["segments"]
    return int(segments[-1]["last"]) if segments else 0


def drive_remote_commands(gateway: GatewayProcess, cwd: Path, outputs: dict[str, str]) -> None:
    """The commands that ask a running gateway, the admin token from the environment (never on the command line)."""
    remote_env = {"CHROMA_HA_ADMIN_TOKEN": ADMIN_TOKEN}
    for args in (
        ("status",),
        ("status", "--json"),
        ("wal", "status"),
        ("wal", "entries", "1"),
        ("wal", "divergences"),
        ("check", "--token", DATA_TOKEN, "--json"),
    ):
        ran = command(remote_env, *args, "--url", gateway.url, cwd=cwd)
        assert ran.returncode == 0, f"{args}: {ran.stdout}{ran.stderr}"
        # the command line itself holds the data token given to check: only what the command printed counts
        outputs[" ".join(args[:2])] = ran.stdout + ran.stderr


def drive(gateway: GatewayProcess, servers: list[ChromaServer], receiver: Receiver, outputs: dict[str, str]) -> None:
    """Every admin route, the dashboard, error answers and the alerts of an instance that goes down and comes back."""
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    client = data_client(gateway.port)
    collection = client.create_collection("scanned", embedding_function=None)
    collection.add(ids=[f"r{n}" for n in range(20)], embeddings=[[float(n), 1.0] for n in range(20)])
    url = gateway.url

    def get(name: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        answer = httpx.get(f"{url}{path}", headers=headers, timeout=10, **kwargs)
        outputs[name] = f"{answer.status_code} {answer.headers} {answer.text}"
        return answer

    wait_for("everything applied", lambda: get("wal", "/wal/status", admin).json(), 60,
             until=lambda s: all(i["cursor"] >= s["head"] for i in s["instances"].values()))  # fmt: skip
    anyone = get("/health, anyone", "/health").json()
    assert set(anyone["instances"]) == {"0", "1"}  # instances by index, for anyone
    assert set(get("/health, admin", "/health", admin).json()["instances"]) == {s.url for s in servers}
    for path in ("/status", "/wal/status", "/wal/stats", "/metrics", "/recommendations", "/admin/openapi.json",
                 "/dashboard", "/dashboard/data"):  # fmt: skip
        assert get(path, path, admin).status_code == 200, path
        assert get(f"{path}, no token", path).status_code in (200, 401), path
    assert get("/metrics json", "/metrics", {**admin, "accept": "application/json"}).status_code == 200
    basic = base64.b64encode(f"admin:{ADMIN_TOKEN}".encode()).decode()
    assert get("/dashboard, browser", "/dashboard", {"authorization": f"Basic {basic}"}).status_code == 200

    # error answers: no token, a wrong one, an unknown route, a bad write
    base = f"{url}/api/v2/tenants/default_tenant/databases/default_database/collections"
    errors = [
        httpx.get(base, timeout=10),
        httpx.get(base, headers={"authorization": f"Bearer {DATA_TOKEN}x"}, timeout=10),
        httpx.get(f"{url}/api/v2/nowhere", headers={"authorization": f"Bearer {DATA_TOKEN}"}, timeout=10),
        httpx.post(
            f"{base}/{collection.id}/add",
            headers={"authorization": f"Bearer {DATA_TOKEN}"},
            json={"ids": ["bad"], "embeddings": [[1.0, 2.0, 3.0]]},
            timeout=10,
        ),
        httpx.get(f"{url}/status", headers={"authorization": f"Bearer {DATA_TOKEN}"}, timeout=10),
    ]
    assert [e.status_code for e in errors][:2] == [401, 401] and all(e.status_code >= 400 for e in errors)
    outputs["errors"] = "\n".join(f"{e.status_code} {e.headers} {e.text}" for e in errors)

    # an instance down and back: its alerts reach both webhooks, /status shows its error
    servers[1].kill()
    wait_for("the down alert on both webhooks", lambda: len(receiver.got), 60, until=lambda n: n >= 2)
    wait_for("instance 1 seen down", lambda: get("/health, degraded", "/health").json(), 30,
             until=lambda h: h["healthy_instances"] == "1/2")  # fmt: skip
    collection.add(ids=["while-down"], embeddings=[[0.5, 0.5]])
    for path in ("/status", "/wal/status", "/dashboard/data", "/metrics"):
        get(f"{path}, degraded", path, admin)
    servers[1].start()
    wait_for("instance 1 back", lambda: get("/health, back", "/health").json(), 60,
             until=lambda h: h["healthy_instances"] == "2/2")  # fmt: skip
    wait_for("the resolved alerts", lambda: len(receiver.got), 60, until=lambda n: n >= 4)
    wait_for("everything applied again", lambda: get("wal, back", "/wal/status", admin).json(), 60,
             until=lambda s: all(i["cursor"] >= s["head"] for i in s["instances"].values()))  # fmt: skip
    assert {path.split("?")[0] for path, _ in receiver.got} == {f"/{SLACK_PATH}", "/hook"}
