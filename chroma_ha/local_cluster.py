"""Local Chroma servers, started from the installed `chromadb` package: for `chroma-ha up`, tests and benchmarks."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

READY_TIMEOUT_S = 60.0


def chroma_executable() -> str:
    beside = Path(sys.executable).parent / "chroma"
    if beside.exists():
        return str(beside)
    found = shutil.which("chroma")
    if found is None:
        raise RuntimeError("the `chroma` command of the chromadb package is not installed")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
        if self.allow_reset:
            env["ALLOW_RESET"] = "TRUE"
        log = open(self.data_dir / "chroma.log", "ab")  # noqa: SIM115 - owned by the child process
        self.process = subprocess.Popen(
            [chroma_executable(), "run", "--path", str(self.data_dir), "--port", str(self.port),
             "--host", "127.0.0.1"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
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
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def wipe(self) -> None:
        """Stop the server and delete its data, as a lost disk would."""
        self.kill()
        shutil.rmtree(self.data_dir, ignore_errors=True)
