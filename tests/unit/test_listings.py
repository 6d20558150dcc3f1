from __future__ import annotations

import pytest

from chroma_ha.gateway.listings import page, window


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", (None, 0)),
        ("limit=5", (5, 0)),
        ("offset=3&limit=2", (2, 3)),
        ("limit=-1", None),  # the instance's own 400 is the answer
        ("offset=abc", None),
        ("limit=", None),
        ("other=1&limit=4", (4, 0)),
    ],
)
def test_the_clients_window_is_read_from_the_query(query: str, expected: tuple[int | None, int] | None) -> None:
    assert window(query) == expected


def test_a_page_is_cut_from_the_listing_ordered_by_id() -> None:
    models = [{"id": "c"}, {"id": "a"}, {"id": "b"}, {"id": "d"}]
    assert [m["id"] for m in page(models, None, 0)] == ["a", "b", "c", "d"]
    assert [m["id"] for m in page(models, 2, 1)] == ["b", "c"]
    assert page(models, 3, 10) == []
