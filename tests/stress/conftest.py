"""Fixtures shared by the stress tests."""

from collections.abc import Iterator

import pytest

from ticketing.db import Database


@pytest.fixture
def pg_db(pg_url: str) -> Iterator[Database]:
    """A handle on the PostgreSQL test database, for checks from outside the servers."""
    database = Database(pg_url, pool_size=2)
    yield database
    database.dispose()
