"""The CLI as a user runs it: `chroma-ha up` (the embedded default) and `chroma-ha serve` with bad settings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import chromadb
import httpx

from chroma_ha.local_cluster import free_port
from tests.harness import wait_for


def run_up(data_dir: Path, port: int, chroma_port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chroma_ha",
            "up",
            "--dir",
            str(data_dir),
            "--port",
            str(port),
            "--chroma-port",
            str(chroma_port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def healthy() -> str:
        assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).json()["healthy_instances"]

    try:
        wait_for(
            "chroma-ha up to serve with both instances up",
            healthy,
            90,
            until=lambda shown: shown == "2/2",
            ignoring=(httpx.HTTPError, ValueError),
        )
    except BaseException:  # it must not outlive a failed start
        if process.poll() is None:
            stop(process)
        raise
    return process


def stop(process: subprocess.Popen[bytes]) -> str:
    os.killpg(process.pid, signal.SIGTERM)
    out, _ = process.communicate(timeout=30)
    return out.decode()


def test_up_serves_stops_cleanly_and_picks_up_where_it_left_off(tmp_path: Path) -> None:
    port, chroma_port = free_port(), free_port()
    process = run_up(tmp_path / "data", port, chroma_port)
    try:
        col = chromadb.HttpClient(host="127.0.0.1", port=port).create_collection("kept", embedding_function=None)
        col.add(ids=["a", "b"], embeddings=[[1.0, 2.0], [3.0, 4.0]], documents=["A", "B"])
    finally:
        output = stop(process)
    assert process.returncode == 0
    assert f'chromadb.HttpClient(host="127.0.0.1", port={port})' in output
    assert "chroma-ha stopped" in output
    assert (tmp_path / "data" / "wal.db").exists()

    process = run_up(tmp_path / "data", port, chroma_port)
    try:
        col = chromadb.HttpClient(host="127.0.0.1", port=port).get_collection("kept", embedding_function=None)
        assert col.get(include=["documents"])["documents"] == ["A", "B"]
        col.delete(ids=["a"])
        assert col.count() == 1
    finally:
        stop(process)


def test_serve_refuses_a_bad_setting_naming_it(tmp_path: Path) -> None:
    env = {**os.environ, "CHROMA_HA_INSTANCES": "http://127.0.0.1:1", "CHROMA_HA_ACK": "sometimes"}
    result = subprocess.run(
        [sys.executable, "-m", "chroma_ha", "serve"], env=env, capture_output=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode != 0
    assert b"ack" in result.stderr and b"sometimes" in result.stderr

    env = {k: v for k, v in os.environ.items() if not k.startswith("CHROMA_HA_")}
    result = subprocess.run(
        [sys.executable, "-m", "chroma_ha", "serve"], env=env, capture_output=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode != 0 and b"instances" in result.stderr
