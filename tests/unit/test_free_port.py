"""Ports for local servers: never the same one twice in a process, however many are picked before any is bound
(the kernel hands a closed port out again: two Chroma servers of one test once shared a port)."""

from __future__ import annotations

import socket

from chroma_ha.local_cluster import free_port


def test_ports_picked_in_a_row_are_all_different_and_free() -> None:
    ports = [free_port() for _ in range(1000)]
    assert len(set(ports)) == len(ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[-1]))  # and free when given
