"""Statements sent to PostgreSQL in one write and answered in one read, through libpq.

`send` is what `kit.sql.Pipeline` runs on PostgreSQL. psycopg's own pipeline mode
sends each command as it is queued: every `execute`, and every parameter set of an
`executemany`, is flushed to the socket at once, and a transaction's BEGIN is synced
before anything else goes. Measured on notification batches of eight: 28 `send` and
53 `poll` calls per batch, each `send` waking the server's backend for one command.
libpq itself keeps what a pipeline sends in its buffer until the Sync
(`PQpipelineSync`) flushes it, so here every command, BEGIN included, goes out in one
write (6 `send` and 5 `poll` calls per batch), and the backend reads them at once.

psycopg still does what it does well. Values are converted by its adapters (the
connection's `Transformer`, as its cursors convert a `%s` parameter), rows by its
loaders, and a failed statement comes back as the `psycopg.errors` class its
cursor would raise.

Each statement text runs as a prepared statement of the connection, made in the
same write the first time it is sent (`_tk<n>`; psycopg's own are `_pg3_<n>`), as
psycopg's cursors prepare what they run often. psycopg deallocates every prepared
statement of a connection when a transaction rolls back (DEALLOCATE ALL: a rolled
back transaction may have dropped what a plan refers to), and the engine then calls
`forget`: the connection's statements are prepared again on their next use, after
a protocol Close of the old names (which closes them if psycopg did not).
"""

from __future__ import annotations

import ctypes
import itertools
import select
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import capabilities, errors, pq
from psycopg.adapt import PyFormat, Transformer

OK = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK)
# Past this many statement texts a connection prepares no more (a bound, not a cache:
# the statements pipelined are built once, at import; there are a few dozen).
MAX_PREPARED = 256
# A Close of a name no longer there is no error, so a name whose fate is unknown can
# always be closed. libpq has sent Close since version 17; psycopg-binary carries it.
CAN_CLOSE = capabilities.has_send_close_prepared()


def _libpq_pipeline_sync() -> Any:
    """`PQpipelineSync` of the libpq psycopg runs on, called through ctypes, or None.

    The Sync flushes the pipeline to the socket, and that write wakes the server's
    backend. On a busy machine the kernel often runs the backend at once, on this
    thread's core, and this thread waits its turn. psycopg makes that call holding the
    GIL, so the worker's event loop waited too: measured under notification load,
    234 µs of wall time per Sync, for 31 µs of CPU. A ctypes call lets go of the GIL.

    The library is the one already in this process (its path from /proc/self/maps,
    Linux only), and only if there is one libpq there and it is the version psycopg
    reports: the connection pointer is valid for that library alone.
    """
    try:
        with open("/proc/self/maps") as maps:  # address, perms, offset, dev, inode, path
            fields = [line.split(None, 5) for line in maps if "/libpq" in line]
        paths = {f[5].strip() for f in fields if len(f) == 6}
    except OSError:
        return None
    if len(paths) != 1:
        return None
    try:
        lib = ctypes.CDLL(paths.pop())
        if lib.PQlibVersion() != pq.version():
            return None
        sync = lib.PQpipelineSync
    except (OSError, AttributeError):
        return None
    sync.argtypes, sync.restype = [ctypes.c_void_p], ctypes.c_int
    return sync


_PIPELINE_SYNC = _libpq_pipeline_sync()


def _pipeline_sync(pgconn: Any) -> None:
    """Mark the end of the pipeline and write it out, without the GIL where possible."""
    if _PIPELINE_SYNC is None:
        pgconn.pipeline_sync()
        return
    pointer = pgconn.pgconn_ptr
    if pointer is None:
        raise psycopg.OperationalError("the connection is closed")
    if _PIPELINE_SYNC(pointer) != 1:
        raise psycopg.OperationalError(
            f"failed to sync pipeline: {pgconn.error_message.decode(errors='replace')}")


_names = itertools.count(1)
_names_lock = threading.Lock()


@dataclass
class _Prepared:
    """A connection's prepared statements: by (query, parameter types), and the names
    that may or may not exist any more, to be closed before the next statement."""

    names: dict[tuple[bytes, tuple[int, ...]], bytes] = field(default_factory=dict)
    stale: list[bytes] = field(default_factory=list)


_prepared: weakref.WeakKeyDictionary[Any, _Prepared] = weakref.WeakKeyDictionary()


@dataclass
class Statement:
    """One statement and its parameter sets, each a command; what they returned."""

    query: bytes                      # PostgreSQL's `$1, $2, ...` placeholders
    params: Sequence[Sequence[Any]]   # at least one parameter set, values in order
    rows: list[tuple[Any, ...]] = field(default_factory=list)  # every set's rows, in order
    rowcount: int = 0                 # rows returned or changed, over every set


def forget(driver: Any) -> None:
    """The connection's prepared statements may be gone: prepare them again."""
    state = _prepared.get(driver)
    if state is not None:
        state.stale.extend(state.names.values())
        state.names.clear()


def _begin_command(driver: psycopg.Connection[Any]) -> bytes:
    """The BEGIN psycopg would send for this connection's settings."""
    parts = [b"BEGIN"]
    if driver.isolation_level is not None:
        parts += [b"ISOLATION LEVEL", driver.isolation_level.name.replace("_", " ").encode()]
    if driver.read_only is not None:
        parts.append(b"READ ONLY" if driver.read_only else b"READ WRITE")
    if driver.deferrable is not None:
        parts.append(b"DEFERRABLE" if driver.deferrable else b"NOT DEFERRABLE")
    return b" ".join(parts)


def begins_transaction(driver: psycopg.Connection[Any]) -> bool:
    """Whether a `send` now begins the connection's transaction (sending its BEGIN, and
    `begin_with` after it): none is open, and the connection is not in autocommit."""
    return not driver.autocommit and driver.pgconn.transaction_status == pq.TransactionStatus.IDLE


def send(driver: psycopg.Connection[Any], statements: Sequence[Statement], *,
         commit: bool = False, begin_with: Sequence[bytes] = ()) -> None:
    """Run `statements` in order, every parameter set of each, in one round trip, in the
    connection's transaction (begun first if none is open); fill in their rows and row
    counts. With `commit`, a COMMIT follows them in the same round trip. `begin_with`:
    commands without parameters (a `SET LOCAL`) sent right after the BEGIN, if this
    send begins the transaction; nothing if it is open already.

    The first statement to fail raises its `psycopg.errors` error, with the index of its
    statement in `statements` as its `statement_index` attribute; none after it has run
    (nor the COMMIT), and the transaction is left failed, for the caller to roll back."""
    if commit and driver.autocommit:
        raise psycopg.ProgrammingError("nothing to commit on an autocommit connection")
    with driver.lock:
        pgconn = driver.pgconn
        if pgconn.status == pq.ConnStatus.BAD:
            raise psycopg.OperationalError("the connection is closed")
        transformer = Transformer.from_context(driver)
        # every value converted before anything is sent: one psycopg cannot adapt
        # raises here, with nothing on the wire
        commands = []
        for statement in statements:
            auto = [PyFormat.AUTO] * len(statement.params[0])
            for values in statement.params:
                dumped = transformer.dump_sequence(values, auto)
                commands.append((statement, statement.query, tuple(transformer.types or ()),
                                 list(dumped), list(transformer.formats or ())))
        state = _prepared.get(driver)
        if state is None:
            state = _prepared.setdefault(driver, _Prepared())
        # what each command's results are: a name closed or prepared, a statement, or
        # None (BEGIN)
        expected: list[Any] = []
        pgconn.enter_pipeline_mode()
        try:
            for name in state.stale:
                pgconn.send_close_prepared(name)
                expected.append(("closed", name))
            if begins_transaction(driver):
                pgconn.send_query_params(_begin_command(driver), None)
                expected.append(None)
                for command in begin_with:
                    pgconn.send_query_params(command, None)
                    expected.append(None)
            for statement, sql, types, values, formats in commands:
                name = state.names.get((sql, types))
                if name is None and CAN_CLOSE and len(state.names) < MAX_PREPARED:
                    with _names_lock:
                        name = f"_tk{next(_names)}".encode()
                    pgconn.send_prepare(name, sql, param_types=types)
                    expected.append(("prepared", (sql, types)))
                    state.names[(sql, types)] = name  # taken back if the Parse fails
                if name is None:
                    pgconn.send_query_params(sql, values, param_types=types,
                                             param_formats=formats)
                else:
                    pgconn.send_query_prepared(name, values, param_formats=formats)
                expected.append(statement)
            if commit:
                pgconn.send_query_params(b"COMMIT", None)
                expected.append(None)
            _pipeline_sync(pgconn)
            groups = _exchange(pgconn)
        except BaseException:
            # lost, or interrupted with commands or results left in libpq's buffers:
            # in no state to be used again (the pool discards a closed connection)
            pgconn.finish()
            raise
        pgconn.exit_pipeline_mode()
        _apply(driver, transformer, state, statements, expected, groups)


def _exchange(pgconn: Any) -> list[list[Any]]:
    """Write what is buffered, then read every command's results up to the Sync's."""
    poller = select.poll()
    poller.register(pgconn.socket, select.POLLIN | select.POLLOUT)
    while pgconn.flush():  # more to write: wait until the socket takes it
        for _fd, ready in poller.poll():
            if ready & select.POLLIN:  # the server answers while we write: take it in
                pgconn.consume_input()
    poller.modify(pgconn.socket, select.POLLIN)
    groups: list[list[Any]] = []
    current: list[Any] = []
    while True:
        if pgconn.is_busy():
            poller.poll()
            pgconn.consume_input()
            continue
        result = pgconn.get_result()
        if result is None:  # the end of one command's results
            groups.append(current)
            current = []
        elif result.status == pq.ExecStatus.PIPELINE_SYNC:
            return groups
        else:
            current.append(result)


def _apply(driver: psycopg.Connection[Any], transformer: Any, state: _Prepared,
           statements: Sequence[Statement], expected: list[Any],
           groups: list[list[Any]]) -> None:
    """Each command's results to its statement; the first error raised."""
    if len(groups) != len(expected):
        raise psycopg.InternalError(f"{len(groups)} results for {len(expected)} commands")
    failure = None
    for what, results in zip(expected, groups, strict=True):
        for result in results:
            if result.status == pq.ExecStatus.FATAL_ERROR and failure is None:
                failure = errors.error_from_result(result, encoding=driver.info.encoding)
                failure.statement_index = next(  # type: ignore[attr-defined]
                    (i for i, s in enumerate(statements) if s is what), None)
        ok = all(result.status in OK for result in results)
        if isinstance(what, Statement):
            if ok:
                for result in results:
                    if result.status == pq.ExecStatus.TUPLES_OK:
                        transformer.set_pgresult(result)
                        what.rows.extend(transformer.load_rows(0, result.ntuples, tuple))
                        what.rowcount += result.ntuples
                    else:
                        what.rowcount += result.command_tuples or 0
        elif what is not None and what[0] == "closed":
            if ok:
                state.stale.remove(what[1])
        elif what is not None and not ok:  # a Parse that did not run, or failed
            state.names.pop(what[1], None)
    if isinstance(failure, errors.InvalidSqlStatementName):
        # a name was gone that `forget` was not told of: make every one again next time
        forget(driver)
    if failure is not None:
        raise failure
