"""Small SQL helpers that differ by dialect."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Table, bindparam, func, select
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


InList = Callable[[Any, str], Any]


def _unnest_array(column: Any, name: str) -> Any:
    return column.in_(select(func.unnest(bindparam(name, type_=postgresql.ARRAY(column.type)))))


def _expanding_in(column: Any, name: str) -> Any:
    return column.in_(bindparam(name, expanding=True))


class PerDialect:
    """A statement with a list parameter, built once for each dialect.

    `build(in_list)` builds the statement; `in_list(column, name)` stands for
    "column is one of the list bound as `name`". On PostgreSQL that is
    `column IN (SELECT unnest(:name))`, the list bound as one array: one statement
    text whatever the list's length, so psycopg prepares it and the server does not
    plan it again; an `IN (...)` list makes a new text (parsed and planned anew,
    never prepared) for every length. The semi-join from the array probes the
    column's index once per element even while the table's statistics are stale
    (`= ANY(:name)` may instead scan a tenant's rows and filter them when the
    planner thinks the tenant has few). SQLite has no arrays and gets the expanding
    IN, which costs it nothing: it runs in-process.
    """

    def __init__(self, build: Callable[[InList], Any]) -> None:
        self.statements = {"postgresql": build(_unnest_array), "sqlite": build(_expanding_in)}

    def run(self, session: Session, params: Any) -> Any:
        """Execute the dialect's statement as `run` does (Core, the session's connection)."""
        conn = session.connection()
        return conn.execute(self.statements[conn.dialect.name], params)
