"""The store under test: each backend in turn (the ``database_url`` fixture)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from api.store import Store, open_store


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = open_store(database_url)
    yield s
    s.close()
