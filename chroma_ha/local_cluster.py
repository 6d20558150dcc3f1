"""Local Chroma servers, started from the installed `chromadb` package: for `chroma-ha up`, tests and benchmarks."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .settings import ENV_PREFIX, definition

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


def chroma_executable() -> str:
    beside = Path(sys.executable).parent / "chroma"
    if beside.exists():
        return str(beside)
    found = shutil.which("chroma")
    if found is None:
        raise RuntimeError(
            "the `chroma` command of the chromadb package is not installed: pip install 'chroma-ha[local]'"
        )
    return found


_handed_out: set[int] = set()  # every port `free_port` gave this process


def free_port() -> int:
    """A port free on loopback now, and never one this process was given before: the kernel offers a port it just
    closed again (300 picks in a row repeat a few), so two servers picked one after the other, before either bound
    its port, would share one."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def kill_group(process: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL a child started in its own session, and everything it started."""
    if process is not None and process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def stop_group(process: subprocess.Popen[bytes] | None, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM, then SIGKILL if it has not stopped within `timeout`."""
    if process is not None and process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_group(process)


class ChromaServer:
    """One `chroma run --path DIR --port P` process."""

    def __init__(self, data_dir: Path, port: int, allow_reset: bool = False) -> None:
        self.data_dir = Path(data_dir)
        self.port = port
        self.allow_reset = allow_reset
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> ChromaServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        args = ["--path", str(self.data_dir), "--port", str(self.port), "--host", "127.0.0.1"]
        if self.allow_reset:
            # Chroma 1.x reads allow_reset from its config file only (an ALLOW_RESET variable is ignored), and
            # takes a config file or the flags, never both
            config = self.data_dir / "chroma-config.yaml"
            config.write_text(
                f'persist_path: "{self.data_dir}"\nport: {self.port}\nlisten_address: "127.0.0.1"\nallow_reset: true\n',
                encoding="utf-8",
            )
            args = [str(config)]
        log = open(self.data_dir / "chroma.log", "ab")  # noqa: SIM115 - owned by the child process
        self.process = subprocess.Popen(
            [chroma_executable(), "run", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"chroma on port {self.port} exited; see {self.data_dir / 'chroma.log'}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/v2/heartbeat", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"chroma on port {self.port} did not answer within {timeout:g}s")

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        kill_group(self.process)

    def stop(self) -> None:
        stop_group(self.process)

    def wipe(self) -> None:
        """Stop the server and delete its data, as a lost disk would."""
        self.kill()
        shutil.rmtree(self.data_dir, ignore_errors=True)


class GatewayProcess:
    """`python -m chroma_ha serve` in a child process, settings in `CHROMA_HA_*` variables, output in a log file.

    A child process, so that a load generator never shares its interpreter and a test can SIGKILL it like a crash.
    """

    def __init__(
        self,
        instances: list[str],
        store: str,
        workdir: Path,
        env: dict[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.instances = instances
        self.store = store
        self.workdir = Path(workdir)
        self.extra_env = dict(env or {})
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"gateway-{self.port}.log"

    @property
    def pid(self) -> int:
        assert self.process is not None, "the gateway was not started"
        return self.process.pid

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        env.update(
            {
                definition("instances").variable: ",".join(self.instances),
                definition("store").variable: self.store,
                definition("host").variable: "127.0.0.1",
                definition("port").variable: str(self.port),
            }
        )
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = READY_TIMEOUT_S) -> GatewayProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "chroma_ha", "serve"],
                env=self.environment(),
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Until the gateway answers /health (200, or 503 while no instance is up yet)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"the gateway exited at start: {self.log_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1):
                    return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"the gateway did not answer within {timeout:g}s; see {self.log_path}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        kill_group(self.process)

    def stop(self) -> None:
        stop_group(self.process)
