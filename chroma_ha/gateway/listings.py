"""One order for listings of collections, whichever instance answers.

Chroma lists the collections of a database in the order of its own collection ids, and every instance has its own
ids, so two instances holding the same collections list them in different orders, and a page (`limit`, `offset`) of
one is not the page of the other. The gateway lists in the same order Chroma uses, applied to the ids clients see
(the canonical ids): it reads the whole listing from one instance, in pages of its own, orders it by canonical id
and cuts the client's page from that. Databases need nothing: Chroma lists them by name, the same on every instance.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

PAGE = 1000  # collections asked of the instance at a time


def window(query: str) -> tuple[int | None, int] | None:
    """The client's (limit, offset), or None when they are not plain numbers: the instance's own answer (a 400)
    is then the client's."""
    limit: int | None = None
    offset = 0
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in ("limit", "offset"):
            continue
        if not value.isdigit():
            return None
        if name == "limit":
            limit = int(value)
        else:
            offset = int(value)
    return limit, offset


def page(models: list[dict[str, Any]], limit: int | None, offset: int) -> list[dict[str, Any]]:
    """The client's page of the whole listing, in canonical-id order. Pure."""
    ordered = sorted(models, key=lambda m: str(m.get("id", "")))
    return ordered[offset : None if limit is None else offset + limit]
