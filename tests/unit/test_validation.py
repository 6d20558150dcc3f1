from __future__ import annotations

import pytest

from chroma_ha.errors import RequestRejected
from chroma_ha.gateway.validation import parse_body


@pytest.mark.parametrize(
    ("op", "body"),
    [
        ("add", b"{not json"),
        ("add", b"[1, 2]"),
        ("add", b'{"ids": "a"}'),
        ("add", b'{"ids": [1, 2]}'),
        ("add", b'{"ids": ["a"], "embeddings": [[1], [2]]}'),
        ("upsert", b'{"ids": ["a"], "metadatas": ["x"]}'),
        ("update", b'{"ids": ["a"], "documents": [3]}'),
        ("delete", b'{"where": "x"}'),
        ("delete", b'{"limit": -1}'),
        ("create_collection", b'{"name": 3}'),
        ("create_collection", b"{}"),
        ("create_collection", b""),
    ],
)
def test_malformed_writes_get_a_clear_400(op: str, body: bytes) -> None:
    with pytest.raises(RequestRejected) as info:
        parse_body(op, body)
    assert info.value.status == 400
    assert info.value.message


def test_wellformed_writes_pass_untouched() -> None:
    payload = parse_body("add", b'{"ids": ["a"], "embeddings": ["AACAPw=="], "metadatas": [null]}')
    assert payload == {"ids": ["a"], "embeddings": ["AACAPw=="], "metadatas": [None]}
    assert parse_body("delete_collection", b"") is None
