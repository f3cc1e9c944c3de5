"""Small SQL helpers that differ by dialect."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_ignoring_conflict(
    session: Session, table: Table, values: dict[str, Any], returning: Any
) -> Any | None:
    """INSERT … ON CONFLICT DO NOTHING RETURNING `returning`; None when the row existed.

    On PostgreSQL a concurrent insert of the same key waits for the other
    transaction and then does nothing, so no savepoint is needed to survive it.
    """
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(table).values(**values).on_conflict_do_nothing().returning(returning)
    return session.execute(stmt).scalar_one_or_none()


def run(session: Session, stmt: Any, params: Any = None) -> Any:
    """Execute a Core statement on the session's connection, in its transaction.

    The hot paths use this with statements built once at import and bound by
    parameter: the ORM's per-statement work (building the statement, its cache key,
    loading entities) is several times the cost of the statement itself. Rows come
    back as named tuples; nothing enters the session's identity map.
    """
    return session.connection().execute(stmt, params)
