"""Chroma's own HTTP API, as the gateway calls it on an instance."""

from __future__ import annotations

API = "/api/v2"
HEARTBEAT = f"{API}/heartbeat"
