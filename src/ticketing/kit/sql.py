"""Small SQL helpers that differ by dialect."""

from __future__ import annotations

import json
import re
from collections import namedtuple
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import orjson
from psycopg.types.json import Json, Jsonb
from sqlalchemy import (JSON, Select, Table, bindparam, cast, func, literal_column, select, text,
                        true)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ticketing.kit import pgpipe


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

    One statement text whatever the list's length, so it is prepared once (an `IN (...)`
    list is a new text, parsed and planned anew, for every length), and in a `plan_once`
    transaction planned once as well. And the plan is one index probe per element
    whatever the table's statistics say: `OFFSET 0` keeps the planner from folding the
    lookup into a join, which it would plan from estimates. When a table has just grown
    fast (a sale opening on a new tenant) and autovacuum has not analysed it yet, the
    planner believes a tenant owns a dozen rows and reads all of its rows instead
    (measured: 10-20 ms per lookup at 25k rows, growing with the table, against 0.1 ms).
    A lookup that locks (`base` FOR UPDATE) locks its rows in the array's order. SQLite
    has no arrays and gets an expanding IN, which costs it nothing: it runs in-process.
    But its planner has no statistics either, and from about 16 elements on it may
    prefer an index that leads with a column `base` binds by equality (a tenant's every
    row) to probing `column`'s index once per element: `sqlite_base`, when given, is
    `base` with such a column made no index key (`no_index_key`).
    """

    def __init__(self, base: Select[Any], column: Any, name: str, *,
                 order_by: Any = None, sqlite_base: Select[Any] | None = None) -> None:
        self.column, self.name, self.order_by = column, name, order_by
        self.sqlite_base = base if sqlite_base is None else sqlite_base
        self._sqlite_by_length: dict[int, Any] = {}
        sqlite_stmt = self._sqlite_stmt(bindparam(name, expanding=True))
        keys = (func.unnest(bindparam(name, type_=postgresql.ARRAY(column.type)))
                .table_valued("value").render_derived(name="k"))
        found = base.where(column == keys.c.value).offset(literal_column("0")).lateral("found")
        pg_stmt = select(*found.c).select_from(keys).join(found, true())
        if order_by is not None:
            pg_stmt = pg_stmt.order_by(found.c[order_by.key])
        self.statements = {"postgresql": pg_stmt, "sqlite": sqlite_stmt}

    def _sqlite_stmt(self, keys: Any) -> Any:
        """SQLite's statement for `keys` (an expanding parameter, or a list of them)."""
        stmt = self.sqlite_base.where(self.column.in_(keys))
        return stmt if self.order_by is None else stmt.order_by(self.order_by)

    def run(self, session: Session, params: Any) -> Any:
        """Execute the dialect's statement as `run` does (Core, the session's connection)."""
        conn = session.connection()
        return conn.execute(self.statements[conn.dialect.name], params)

    def queue(self, pipeline: Pipeline, params: dict[str, Any]) -> Queued:
        """The dialect's statement, queued in `pipeline`; its rows once it is flushed.

        On SQLite the list's elements are bound one by one, `name_0`, `name_1`, ...: a
        statement per length of list, so that the pipeline can run it on `sqlite3`
        directly, as it does writes (an expanding parameter is SQLAlchemy's to expand).
        """
        if pipeline.dialect != "sqlite":
            return pipeline.read(self.statements[pipeline.dialect], params)
        values = list(params[self.name])
        stmt = self._sqlite_by_length.get(len(values))
        if stmt is None:
            stmt = self._sqlite_by_length.setdefault(len(values), self._sqlite_stmt(
                [bindparam(f"{self.name}_{i}") for i in range(len(values))]))
        bound = {k: v for k, v in params.items() if k != self.name}
        bound.update((f"{self.name}_{i}", v) for i, v in enumerate(values))
        return pipeline.read(stmt, bound)


class Queued:
    """What one queued statement did, known once its `Pipeline` is flushed: the rows it
    returned (named tuples, or SQLAlchemy's rows: read by position and by name), and for
    a write the rows it changed."""

    def __init__(self) -> None:
        self.rowcount = -1
        self.rows: list[Any] = []


class Pipeline:
    """Statements of one transaction, queued, then sent together by `flush`.

    A notification batch reads four tables and writes six; each statement sent on its
    own is a round trip, and on a loopback connection a round trip costs both processes
    system calls and a wake-up (measured here: 60-70 µs of kernel time on the client,
    and about as much on the server), plus SQLAlchemy's work per execution (about
    140 µs), more than most of these statements cost the database. On PostgreSQL,
    `flush` sends every queued statement, a write with all its parameter sets, in one
    libpq pipeline (`kit.pgpipe`): one write and one round trip for all of them, the
    transaction's BEGIN too if it is the first (an INSERT of many rows goes as one
    statement, see `_row_form`), run by the server in the order queued (a
    statement sees what the ones before it did, and a read queued after a
    locking read sees what was committed before the lock was granted). Each
    statement is compiled by SQLAlchemy once per dialect and set of parameter names
    (`_compiled`), and its parameters and rows converted by the column types as
    SQLAlchemy would, so the SQL and the values are the ones the Core statement would
    have. SQLite runs in-process, where a round trip costs nothing but SQLAlchemy's
    work per execution is most of a statement's cost: its statements go to `sqlite3`
    directly, compiled and converted the same way (a ListLookup binds its list's
    elements one by one there, see `ListLookup.queue`).

    A flush commits nothing, unless it is the transaction's last: `flush(commit=True)`
    sends the COMMIT on PostgreSQL in the same round trip (see there). A failure of any
    statement raises (a database's error as SQLAlchemy's, as a statement run through
    it would), and the caller's transaction rolls back whole. `expect` is the number
    of rows a write must change; a different count raises RowCountError (an UPDATE
    guarded by a lock that did not guard, a compare-and-set that did not hold).
    Listeners of SQLAlchemy's `before_cursor_execute` see every statement, pipelined
    or not (a pipelined one on PostgreSQL with its parameters as queued, and no
    cursor; a pipelined COMMIT as `COMMIT`, SQLAlchemy's `commit` event following
    when the caller's transaction ends, with nothing left to send).
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self.dialect: str = session.get_bind().dialect.name
        self._queued: list[tuple[Any, list[dict[str, Any]], int | None, Queued]] = []

    def read(self, stmt: Any, params: dict[str, Any]) -> Queued:
        """Queue a SELECT; its rows, after `flush`."""
        queued = Queued()
        self._queued.append((stmt, [params], None, queued))
        return queued

    def write(self, stmt: Any, params: list[dict[str, Any]], *,
              expect: int | None = None) -> Queued:
        """Queue an INSERT or UPDATE for every parameter set in `params`."""
        queued = Queued()
        if params:
            _check_defaults(stmt, tuple(params[0]))
            self._queued.append((stmt, params, expect, queued))
        else:
            queued.rowcount = 0
        return queued

    def flush(self, *, commit: bool = False) -> None:
        """Run what is queued, in order; check each write's expected row count.

        `commit`: these are the transaction's last statements. On PostgreSQL the COMMIT
        goes with them, in the same round trip, and each write's row count is checked
        by the database before it (`ticketing_expect_rows`, migration 0006: the write
        then runs as `WITH changed AS (… RETURNING 1) SELECT …`, one row expected of
        each parameter set), so that a wrong count fails the transaction instead of
        committing it. A lock held to the end (an order's, a hot product row's) is then
        let go when the database has committed, not a round trip later. The caller's
        transaction has nothing left to send: its commit finds the connection idle and
        sends nothing, and any statement after this flush fails it (`check_ended`).
        Elsewhere (SQLite, in-process) the flush checks its counts as any other and the
        caller's transaction commits as before."""
        queued, self._queued = self._queued, []
        if not queued:
            return
        if commit:  # refused alike on every database, so SQLite's tests catch it too
            for stmt, params, expect, _done in queued:
                if (_checked_before_commit(stmt, expect)
                        and (expect != len(params) or _returns_rows(stmt))):
                    raise ValueError(f"a committing flush checks one row per parameter set "
                                     f"of a write returning none ({stmt.table.name}: "
                                     f"{expect} of {len(params)})")
        conn = self.session.connection()
        if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
            _pipelined(conn, queued, commit=commit,
                       begin_with=(PLAN_ONCE,) if self.session.info.get(_PLAN_ONCE) else ())
            if commit:
                self.session.info[_COMMITTED] = True
        elif conn.dialect.name == "sqlite" and conn.dialect.driver == "pysqlite":
            _in_process(conn, queued)
        else:
            for stmt, params, _expect, done in queued:
                _one_by_one(conn, stmt, params, done)
        for stmt, params, expect, done in queued:
            if expect is not None and done.rowcount != expect:
                raise RowCountError(f"{done.rowcount} rows written where {expect} were "
                                    f"expected ({stmt.table.name})", done)


class RowCountError(RuntimeError):
    """A queued write changed another number of rows than it was to; `queued` is its
    `Queued`. The transaction is to be rolled back: on PostgreSQL a committing flush
    has already failed it, on every database nothing of it is committed."""

    def __init__(self, message: str, queued: Queued) -> None:
        super().__init__(message)
        self.queued = queued


_COMMITTED = "ticketing_committed_by_pipeline"
ROW_COUNT_SQLSTATE = "TK001"  # raised by ticketing_expect_rows (migration 0006)


def check_ended(session: Session) -> None:
    """Raise if the session's transaction was committed by a pipeline (`Pipeline.flush`
    with `commit`) and a statement ran after it: that statement began a transaction of
    its own, which the caller, rolling back on this error, undoes."""
    if not session.info.pop(_COMMITTED, False):
        return
    driver = session.connection().connection.driver_connection
    if driver.pgconn.transaction_status != pgpipe.pq.TransactionStatus.IDLE:
        raise RuntimeError("a statement ran after its transaction's committing flush")


_PLAN_ONCE = "ticketing_plan_once"
# PostgreSQL plans a prepared statement anew at each execution for as long as its
# plan for the values at hand looks cheaper than one plan for any values; a lookup
# joined to an array of keys always does (its generic plan counts on ten keys).
PLAN_ONCE = b"SET LOCAL plan_cache_mode = force_generic_plan"


def plan_once(session: Session) -> None:
    """Every statement of this transaction finds its rows by key (a primary or unique
    key, a list of them, an order's or a tenant's rows through an index of that key):
    on PostgreSQL its pipelines run each prepared statement on the one plan made for
    any values, instead of planning it again for each execution (`PLAN_ONCE`, sent
    with the BEGIN of the first pipeline, when a pipeline begins the transaction: it
    ends with the transaction, committed or not, and reaches no other). Not for a
    transaction with a lookup whose plan depends on the value, such as a partial
    index's predicate compared with a parameter (`status = 'PENDING'`)."""
    session.info[_PLAN_ONCE] = True


def execute_many(conn: Any, stmt: Any, params: list[dict[str, Any]]) -> int:
    """Run an INSERT or UPDATE for each parameter set; the rows it changed in all.

    One executemany where the driver reports its row count (PostgreSQL: one round
    trip), else one statement each.
    """
    if len(params) > 1 and conn.dialect.supports_sane_multi_rowcount:
        return conn.execute(stmt, params).rowcount  # type: ignore[no-any-return]
    return sum(conn.execute(stmt, one).rowcount for one in params)


def _returns_rows(stmt: Any) -> bool:
    return bool(stmt.is_select or stmt._returning)


def _one_by_one(conn: Any, stmt: Any, params: list[dict[str, Any]], done: Queued) -> None:
    if stmt.is_select:
        done.rows = list(conn.execute(stmt, params[0]))
        done.rowcount = len(done.rows)
    elif stmt._returning:  # SQLAlchemy's multi-row form, rows in the order given
        done.rows = list(conn.execute(stmt, params))
        done.rowcount = len(done.rows)
    else:
        done.rowcount = execute_many(conn, stmt, params)


_CHECKED: dict[tuple[int, tuple[str, ...]], Any] = {}  # -> the statement (its id stays its)


def _check_defaults(stmt: Any, keys: tuple[str, ...]) -> None:
    """An INSERT must name every column with a Python-side default: SQLAlchemy fills
    those in when it runs a statement, a pipelined one could not (on every database
    alike, so SQLite's tests catch what PostgreSQL would miss)."""
    if (id(stmt), keys) in _CHECKED or not stmt.is_insert:
        return
    missing = [c.key for c in stmt.table.c if c.default is not None and c.key not in keys]
    if missing:
        raise ValueError(f"{stmt.table.name}: no value for {missing}")
    _CHECKED[(id(stmt), keys)] = stmt


@dataclass(frozen=True)
class _Compiled:
    sql: str
    binds: dict[str, Any]   # parameter name -> the column type's conversion, where it has one
    positions: tuple[str, ...] | None  # parameter names in order (SQLite's `?` style)
    numbered: bytes | None  # PostgreSQL: the text with `$1, $2, ...` for `positions`
    row: Any                # the named tuple of a returned row
    columns: tuple[Any, ...]  # each returned column's conversion, or None
    stmt: Any               # kept, so its id is not reused while it is cached here


_COMPILED: dict[tuple[int, str, tuple[str, ...]], _Compiled] = {}


def _compiled(stmt: Any, dialect: Any, keys: tuple[str, ...]) -> _Compiled:
    """`stmt` compiled for parameters `keys` (a write: for an executemany)."""
    key = (id(stmt), dialect.name, keys)
    found = _COMPILED.get(key)
    if found is None:
        # An executemany unless rows come back: with RETURNING, SQLAlchemy would compile
        # its own multi-row form; psycopg runs the one-row form for each parameter set.
        compiled = stmt.compile(dialect=dialect, column_keys=None if stmt.is_select else
                                list(keys), for_executemany=not _returns_rows(stmt))
        if "POSTCOMPILE" in compiled.string:
            raise ValueError("a statement with an expanding parameter cannot be pipelined")
        names = tuple(c[0] for c in compiled._result_columns)
        positions, numbered = (tuple(compiled.positiontup) if compiled.positiontup else None,
                               None)
        if dialect.name == "postgresql":
            numbered, positions = _numbered(compiled.string)
        found = _COMPILED[key] = _Compiled(
            compiled.string, dict(compiled._bind_processors), positions, numbered,
            namedtuple("Returned", names) if names else None,  # type: ignore[misc]
            tuple(c[3]._cached_result_processor(dialect, None)
                  for c in compiled._result_columns),
            stmt)
    return found


_PLACEHOLDER = re.compile(r"%\(([^)]+)\)s|%%")


def _numbered(sql: str) -> tuple[bytes, tuple[str, ...]]:
    """psycopg's `%(name)s` placeholders as PostgreSQL's `$n` (a name used twice is one
    parameter), and the names in order: what psycopg would make of the text."""
    order: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        if match.group(0) == "%%":
            return "%"
        return f"${order.setdefault(match.group(1), len(order) + 1)}"

    return _PLACEHOLDER.sub(number, sql).encode(), tuple(order)


@dataclass(frozen=True)
class _RowForm:
    insert: Any             # the statement over the JSON array of rows
    sort_key: str | None    # the returned rows' key to sort by, when rows are returned


# -> (the statement, kept so its id is not reused while it is cached here; its form)
_ROW_FORMS: dict[tuple[int, tuple[str, ...]], tuple[Any, _RowForm | None]] = {}


def _row_form(stmt: Any, dialect: Any, keys: tuple[str, ...]) -> _RowForm | None:
    """A plain INSERT of many rows as one PostgreSQL statement over a JSON array of
    them; None for a statement that keeps its executemany.

        INSERT INTO t (a, b) SELECT v.a, CAST(v.b AS JSON)
        FROM ROWS FROM (json_to_recordset(CAST(:rows AS JSON)) AS (a BIGINT, b TEXT))
             WITH ORDINALITY AS v(a, b, n)
        ORDER BY v.n [RETURNING …]

    psycopg's executemany sends each parameter set as a command of its own, with a
    wait on the socket for each, and the server runs each as a statement: for a
    notification batch, thirty-odd commands where the tables written are six. This
    form is one command per table, with one text whatever the number of rows
    (prepared once, like ListLookup's) and one parameter, the rows as JSON made by
    orjson. Each value is converted by its column's type first, as in a row of its
    own; a JSON column's value travels as its JSON text (a JSON null stays JSON
    null, not SQL NULL) and is cast back. The rows go in in parameter order (ORDER BY
    keeps the subquery apart and sorted, and the defaults, the sequence's next id
    among them, are computed above it, row by row), so a RETURNING that includes the
    table's integer primary key gives parameter order back when sorted by it: what
    SQLAlchemy's own many-row INSERT relies on. An INSERT that returns rows without
    that key keeps its executemany, and so does an UPDATE: joined to a list of keys,
    its rows would be looked up, and locked, in whatever order and by whatever plan
    the planner chose from its estimates.
    """
    key = (id(stmt), keys)
    if key in _ROW_FORMS:
        return _ROW_FORMS[key][1]
    form = None
    table = getattr(stmt, "table", None)
    if (stmt.is_insert and not stmt._multi_values and not stmt._values
            and stmt._post_values_clause is None and table is not None
            and all(k in table.c for k in keys)):
        sort_key = None
        if stmt._returning:
            pk = list(table.primary_key.columns)
            names = {getattr(c, "key", None) for c in stmt._returning}
            if len(pk) == 1 and pk[0].autoincrement in (True, "auto") and pk[0].key in names:
                sort_key = pk[0].key
        if not stmt._returning or sort_key is not None:
            json_keys = frozenset(k for k in keys if isinstance(table.c[k].type, JSON))
            name = {k: dialect.identifier_preparer.quote(table.c[k].name) for k in keys}
            declared = ", ".join(
                f"{name[k]} {'TEXT' if k in json_keys else table.c[k].type.compile(dialect=dialect)}"
                for k in keys)
            source = text(f"ROWS FROM (json_to_recordset(CAST(:rows AS JSON)) AS ({declared})) "
                          f"WITH ORDINALITY AS v({', '.join(name[k] for k in keys)}, n)")
            values = [cast(literal_column(f"v.{name[k]}"), JSON) if k in json_keys
                      else literal_column(f"v.{name[k]}") for k in keys]
            rows = select(*values).select_from(source).order_by(literal_column("v.n"))
            form = _RowForm(stmt.from_select(list(keys), rows), sort_key)
    _ROW_FORMS[key] = (stmt, form)
    return form


def _json_text(dialect: Any) -> Any:
    """orjson's fallback for `dialect`: a JSON column's value as the driver would have
    sent it, made by the engine's `json_serializer` (which psycopg is given as its JSON
    dumper; SQLAlchemy's `Json` wrapper names no serializer of its own)."""
    serializer = getattr(dialect, "_json_serializer", None) or json.dumps

    def text(value: Any) -> Any:
        if isinstance(value, (Json, Jsonb)):
            return (value.dumps or serializer)(value.obj)
        raise TypeError(f"{type(value).__name__} cannot be sent in a many-row INSERT")

    return text


def _listened(conn: Any) -> bool:
    """Whether anything listens for executed statements (the engine's other listeners,
    of checkouts and rollbacks, do not count: a dispatch to none costs each statement)."""
    return bool((conn._has_events or conn.engine._has_events)
                and conn.dispatch.before_cursor_execute)


_CHECKED_FORMS: dict[int, tuple[_Compiled, _Compiled]] = {}  # id(plan) -> (plan, checked)


def _checked_before_commit(stmt: Any, expect: int | None) -> bool:
    """Whether a committing flush has the database check this write's row count. A plain
    INSERT writes every row it is given or fails: its count needs no check (one with ON
    CONFLICT may skip rows, and does)."""
    return expect is not None and not (stmt.is_insert and stmt._post_values_clause is None)


def _checked(stmt: Any, plan: _Compiled) -> _Compiled:
    """A write that must change one row for each parameter set (`flush` made sure it
    returns none), as a statement that fails unless it did: `WITH changed AS
    (… RETURNING 1) SELECT ticketing_expect_rows(count(*), 1, '<table>') FROM changed`.
    It returns one row."""
    assert plan.numbered is not None
    found = _CHECKED_FORMS.get(id(plan))
    if found is None:
        table = stmt.table.name.replace("'", "''")
        head = "WITH changed AS ("
        tail = f" RETURNING 1) SELECT ticketing_expect_rows(count(*), 1, '{table}') FROM changed"
        found = _CHECKED_FORMS[id(plan)] = (plan, replace(
            plan, sql=head + plan.sql + tail,
            numbered=head.encode() + plan.numbered + tail.encode()))
    return found[1]


def _pipelined(conn: Any, queued: list[tuple[Any, list[dict[str, Any]], int | None, Queued]],
               *, commit: bool = False, begin_with: tuple[bytes, ...] = ()) -> None:
    """The statements in one write and one read (`kit.pgpipe`): one round trip; with
    `commit`, the COMMIT too, each write's row count checked by the database first;
    `begin_with` after the BEGIN, if this pipeline begins the transaction."""
    driver = conn.connection.driver_connection
    events = _listened(conn)
    sent = []
    try:
        if begin_with and events and pgpipe.begins_transaction(driver):
            for command in begin_with:  # statements sent, as the COMMIT is
                conn.dispatch.before_cursor_execute(conn, None, command.decode(), {}, None,
                                                    False)
        for stmt, params, expect, _done in queued:
            keys = tuple(params[0])
            plan = _compiled(stmt, conn.dialect, keys)
            if commit and _checked_before_commit(stmt, expect):
                plan, form = _checked(stmt, plan), None
            else:
                form = (None if stmt.is_select or len(params) == 1
                        else _row_form(stmt, conn.dialect, keys))
            if form is not None:  # the converted rows, as one JSON array
                rows = [{k: (plan.binds[k](v) if k in plan.binds else v)
                         for k, v in row.items()} for row in params]
                params = [{"rows": orjson.dumps(rows, default=_json_text(conn.dialect)).decode()}]
                plan = _compiled(form.insert, conn.dialect, ("rows",))
            if events:  # what listeners of executed statements see (tests, the bench)
                conn.dispatch.before_cursor_execute(conn, None, plan.sql, params, None,
                                                    not stmt.is_select)
            assert plan.numbered is not None and plan.positions is not None
            binds, positions = plan.binds, plan.positions
            values = [[binds[k](row[k]) if k in binds else row[k] for k in positions]
                      for row in params]
            sent.append((pgpipe.Statement(plan.numbered, values), plan, form))
        if commit and events:  # the COMMIT too is a statement sent
            conn.dispatch.before_cursor_execute(conn, None, "COMMIT", {}, None, False)
        pgpipe.send(driver, [statement for statement, _plan, _form in sent], commit=commit,
                    begin_with=begin_with)
    except Exception as exc:
        if driver.broken:  # the connection is gone: the pool must not hand it out again
            conn.invalidate(exc)
        if getattr(exc, "sqlstate", None) == ROW_COUNT_SQLSTATE:
            done = queued[exc.statement_index][3]  # type: ignore[attr-defined]
            raise RowCountError(exc.diag.message_primary, done) from exc  # type: ignore[attr-defined]
        _raise_wrapped(conn, exc, [plan.sql for _statement, plan, _form in sent])
        raise
    for (stmt, _params, _expect, done), (statement, plan, form) in zip(queued, sent,
                                                                       strict=True):
        if _returns_rows(stmt):
            done.rows = _converted(statement.rows, plan)
            if form is not None and form.sort_key is not None:
                done.rows.sort(key=lambda row, k=form.sort_key: getattr(row, k))
        done.rowcount = statement.rowcount


def _in_process(conn: Any, queued: list[tuple[Any, list[dict[str, Any]], int | None, Queued]]
                ) -> None:
    """The statements on SQLite, straight to `sqlite3`."""
    events = _listened(conn)
    cursor = conn.connection.driver_connection.cursor()
    sql = ""
    try:
        for stmt, params, _expect, done in queued:
            plan = _compiled(stmt, conn.dialect, tuple(params[0]))
            sql = plan.sql
            rows = [tuple(plan.binds[k](row[k]) if k in plan.binds else row[k]
                          for k in plan.positions or ()) for row in params]
            if events:  # a read's one row of parameters, a write's every row
                conn.dispatch.before_cursor_execute(
                    conn, cursor, plan.sql, rows[0] if stmt.is_select else rows, None,
                    not stmt.is_select)
            if stmt.is_select:
                cursor.execute(plan.sql, rows[0])
                done.rows = _converted(cursor.fetchall(), plan)
                done.rowcount = len(done.rows)
            elif stmt._returning:  # one row at a time: SQLite returns them in no set order
                done.rows = []
                for row in rows:
                    cursor.execute(plan.sql, row)
                    done.rows.extend(_converted(cursor.fetchall(), plan))
                done.rowcount = len(done.rows)
            else:
                cursor.executemany(plan.sql, rows)
                done.rowcount = cursor.rowcount
    except Exception as exc:
        _raise_wrapped(conn, exc, [sql])
        raise
    finally:
        cursor.close()


def _raise_wrapped(conn: Any, exc: Exception, sql: list[str]) -> None:
    """Raise a driver's error as SQLAlchemy would have (IntegrityError for a unique key,
    say), so callers catch the same exceptions whether a statement was queued or not;
    return for any other. A pipeline's failure is not tied to one statement: the error
    names them all, without their parameters."""
    dbapi = conn.dialect.loaded_dbapi
    if isinstance(exc, dbapi.Error):
        raise DBAPIError.instance("; ".join(sql), None, exc, dbapi.Error, hide_parameters=True,
                                  connection_invalidated=conn.invalidated,
                                  dialect=conn.dialect) from exc


def _converted(raws: list[Any], plan: _Compiled) -> list[Any]:
    """Rows as named tuples, each column converted by its type as SQLAlchemy would."""
    convert = [(i, f) for i, f in enumerate(plan.columns) if f is not None]
    rows = []
    for raw in raws:
        if convert:
            raw = list(raw)
            for i, f in convert:
                raw[i] = f(raw[i])
        rows.append(plan.row._make(raw))
    return rows
