"""Small SQL helpers that differ by dialect."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Select, Table, bindparam, func, literal_column, select, true
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression
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


def no_index_key(column: Any) -> Any:
    """`+column`: the same value, but SQLite will not look rows up by it in an index
    (its documented way to rule a WHERE term out of index selection). For SQLite only:
    PostgreSQL would not use an index for it either."""
    return UnaryExpression(column, operator=operators.custom_op("+"), type_=column.type)


def grouped(pairs: Iterable[tuple[Any, Any]]) -> list[tuple[Any, list[Any]]]:
    """(group, key) pairs as each group's sorted keys, groups in order.

    A ListLookup binds one group (a tenant, say) and a list of keys; callers that
    hold keys of several groups run it once per group, groups in order and each
    one's keys sorted, so locks are taken in one global order on every path.
    """
    groups: dict[Any, set[Any]] = {}
    for group, key in pairs:
        groups.setdefault(group, set()).add(key)
    return [(group, sorted(groups[group])) for group in sorted(groups)]


class ListLookup:
    """SELECT the rows whose `column` is one of a list bound as `name`, built once per
    dialect.

    `base` is the statement without that condition and without ORDER BY (rows come
    back sorted by `order_by`, if given). On PostgreSQL the list is one array and
    each element is looked up on its own:

        SELECT found.* FROM unnest(:name) AS k(value)
        CROSS JOIN LATERAL (<base> AND column = k.value OFFSET 0) AS found

    One statement text whatever the list's length, so psycopg prepares it and the
    server plans it once (an `IN (...)` list is a new text, parsed and planned anew,
    for every length). And the plan is one index probe per element whatever the
    table's statistics say: `OFFSET 0` keeps the planner from folding the lookup
    into a join, which it would plan from estimates. When a table has just grown
    fast (a sale opening on a new tenant) and autovacuum has not analysed it yet,
    the planner believes a tenant owns a dozen rows and reads all of its rows
    instead (measured: 10-20 ms per lookup at 25k rows, growing with the table,
    against 0.1 ms). A lookup that locks (`base` FOR UPDATE) locks its rows in
    the array's order. SQLite has no arrays and gets an expanding IN, which costs
    it nothing: it runs in-process. But its planner has no statistics either, and
    from about 16 elements on it may prefer an index that leads with a column `base`
    binds by equality (a tenant's every row) to probing `column`'s index once per
    element: `sqlite_base`, when given, is `base` with such a column made no index
    key (`no_index_key`).
    """

    def __init__(self, base: Select[Any], column: Any, name: str, *,
                 order_by: Any = None, sqlite_base: Select[Any] | None = None) -> None:
        sqlite_stmt = (base if sqlite_base is None else sqlite_base).where(
            column.in_(bindparam(name, expanding=True)))
        keys = (func.unnest(bindparam(name, type_=postgresql.ARRAY(column.type)))
                .table_valued("value").render_derived(name="k"))
        found = base.where(column == keys.c.value).offset(literal_column("0")).lateral("found")
        pg_stmt = select(*found.c).select_from(keys).join(found, true())
        if order_by is not None:
            sqlite_stmt = sqlite_stmt.order_by(order_by)
            pg_stmt = pg_stmt.order_by(found.c[order_by.key])
        self.statements = {"postgresql": pg_stmt, "sqlite": sqlite_stmt}

    def run(self, session: Session, params: Any) -> Any:
        """Execute the dialect's statement as `run` does (Core, the session's connection)."""
        conn = session.connection()
        return conn.execute(self.statements[conn.dialect.name], params)
