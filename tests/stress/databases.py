"""A migrated database shared by every test of a module, one per kind (SQLite, PostgreSQL).

For modules whose tests are better on accumulated state (fuzzing) or share one server
(hostile input); `db_url` in tests/conftest.py stays the per-test default.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import psycopg
import pytest

from tests.conftest import _conninfo, _with_db


def module_database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                    prefix: str) -> Iterator[str]:
    """Yield the URL of a fresh database of kind `request.param`; drop it afterwards."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp(prefix) / f"{prefix}.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    server, name = request.getfixturevalue("pg_server"), f"{prefix}_{os.getpid()}"
    with psycopg.connect(_conninfo(server), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{request.getfixturevalue("pg_template")}"')
    yield _with_db(server, name)
    with psycopg.connect(_conninfo(server), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
