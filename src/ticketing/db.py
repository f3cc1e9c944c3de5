"""Engines and transactions for SQLite and PostgreSQL.

One transaction per entry point: `Database.transaction()` commits when its block
ends normally and rolls back on any exception. Services only flush.

SQLite: WAL journal and `BEGIN IMMEDIATE` for writing transactions, so a writer
never upgrades a read lock too late. Writers of one database file queue for a
writer lock first (a thread lock, then `flock` on `<db>-writer.lock`), taken just
before `BEGIN IMMEDIATE` and dropped after COMMIT or ROLLBACK: they wait in the
kernel, in turn, instead of in SQLite's busy handler, which sleeps and polls and
lets a late writer overtake one that has waited for a second. The busy timeout
stays as the safety net for programs that open the file without the lock. A group
commit holds the lock for a whole turn (`Database.writer_turn`): it waits for the lock
first and only then takes its batch, so what arrives meanwhile joins it.

PostgreSQL: a pooled connection whose backend went away while it sat in the pool
(restart, terminated backend) is replaced at checkout, because its socket turned
readable; that costs a poll(), where a pre-ping costs a round trip per transaction.
A cut after checkout fails its request, as it did with the pre-ping (a 5xx the
sender retries), and SQLAlchemy then renews the whole pool.
"""

from __future__ import annotations

import fcntl
import os
import select
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

import orjson
import psycopg
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from ticketing.kit import pgpipe
from ticketing.kit.sql import check_ended

READONLY = "ticketing_readonly"
_LAST = "ticketing_run_last"
BUSY_TIMEOUT_SECONDS = 30


def run_last(session: Session, work: Callable[[Session], None]) -> None:
    """Queue `work` to run as the transaction's last statements, just before COMMIT.

    A hot row (a product's stock counters, touched by every sale of it) stays locked
    from its UPDATE until COMMIT; updating it last holds that lock for one statement
    and the commit instead of the whole transaction.
    """
    session.info.setdefault(_LAST, []).append(work)


def _end_work(session: Session) -> None:
    """What a transaction's block leaves to do before its COMMIT: the work `run_last`
    queued, in order, and the session's pending changes; then, if a pipeline's last
    flush sent the COMMIT already (`kit.sql.Pipeline.flush`), a check that nothing
    followed it."""
    for work in session.info.pop(_LAST, ()):
        work(session)
    session.flush()
    check_ended(session)


def sqlalchemy_url(url: str) -> str:
    """Map the contract's `postgresql://` and `sqlite:///` URLs to SQLAlchemy drivers."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


class WriterLock:
    """One writer at a time on a SQLite file, across the threads and processes that use it.

    Threads of a process queue on a lock; the one holding it then takes an exclusive
    `flock` on the lock file, so at most one thread per process waits in the kernel
    for another process's writer. A thread that waited the busy timeout in the queue
    goes on without the lock and leaves the rest to SQLite's busy handler, as before.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._pid = -1
        self._guard = threading.Lock()
        self._turns = threading.local()  # this thread's `turn` depth

    def held_here(self) -> bool:
        """Whether this thread is inside a `turn` that holds the lock."""
        return bool(getattr(self._turns, "depth", 0))

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the lock across every transaction this thread begins in the block.

        A group commit takes its batch inside a turn: the requests that arrive while
        it waits for another process's writer join the batch instead of the next one.
        Transactions begun in the block take no lock of their own. After the busy
        timeout the block runs without the lock, as `acquire` would.
        """
        if self.held_here():
            self._turns.depth += 1
            owned = False
        else:
            owned = self.acquire()
            self._turns.depth = 1 if owned else 0
        try:
            yield
        finally:
            if self._turns.depth:
                self._turns.depth -= 1
            if owned:
                self.release()

    def _fresh(self) -> None:
        # A forked child shares the parent's open file (and its flock): open its own.
        if self._pid != os.getpid():
            self._thread = threading.Lock()
            try:  # flock needs no write access: another user's lock file will do
                self._fd: int | None = os.open(self.path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC,
                                               0o644)
            except OSError:  # no lock file here: threads of this process still queue
                self._fd = None
            self._pid = os.getpid()

    def acquire(self) -> bool:
        """Wait for the lock; False (and no lock) after the busy timeout."""
        with self._guard:
            self._fresh()
            thread, fd = self._thread, self._fd
        if not thread.acquire(timeout=BUSY_TIMEOUT_SECONDS):
            return False
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                thread.release()
                raise
        return True

    def release(self) -> None:
        """Let the next writer in."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._thread.release()


_writer_locks: dict[str, WriterLock] = {}
_writer_locks_guard = threading.Lock()


def writer_lock(database: str) -> WriterLock:
    """The process's writer lock of the SQLite file `database`."""
    path = os.path.realpath(database) + "-writer.lock"
    with _writer_locks_guard:
        return _writer_locks.setdefault(path, WriterLock(path))


class _SqliteConnection(sqlite3.Connection):
    """A sqlite3 connection that lets go of its writer lock once its transaction ends."""

    writer: WriterLock | None = None
    holds_writer = False

    def take_writer(self) -> None:
        if self.writer is not None and not self.holds_writer and not self.writer.held_here():
            self.holds_writer = self.writer.acquire()

    def let_go(self) -> None:
        """Release the writer lock unless a transaction is still open."""
        if self.holds_writer and not self.in_transaction:
            self.holds_writer = False
            self.writer.release()  # type: ignore[union-attr]

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.let_go()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.let_go()

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.holds_writer:
                self.holds_writer = False
                self.writer.release()  # type: ignore[union-attr]


def _prepare_sqlite(engine: Engine, writer: WriterLock | None) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # pragma: no cover - driver hook
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        dbapi_conn.writer = writer
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        if conn.get_execution_options().get(READONLY):
            conn.exec_driver_sql("BEGIN")
        else:
            dbapi_conn = conn.connection.dbapi_connection
            dbapi_conn.take_writer()
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            except BaseException:
                dbapi_conn.let_go()
                raise


def _socket_has_news(dbapi_conn) -> bool:
    """Whether an idle psycopg connection was closed or told something by its server.

    An idle backend sends nothing unprompted (this service never LISTENs), so a
    readable socket means a termination notice or EOF: the connection is gone.
    """
    if dbapi_conn.closed or dbapi_conn.broken:
        return True
    poller = select.poll()
    poller.register(dbapi_conn.pgconn.socket, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


def _forget_prepared(conn: Connection) -> None:
    if not conn.invalidated:  # an invalidated connection is closed, not reused
        pgpipe.forget(conn.connection.driver_connection)


def _prepare_postgresql(engine: Engine) -> None:
    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn, _record, _proxy) -> None:
        if _socket_has_news(dbapi_conn):
            raise DisconnectionError("the server closed the connection while it was pooled")

    # psycopg deallocates a connection's prepared statements when a transaction (or a
    # savepoint) rolls back; the pipeline's must then be prepared again (kit.pgpipe)
    @event.listens_for(engine, "rollback")
    def _on_rollback(conn) -> None:
        _forget_prepared(conn)

    @event.listens_for(engine, "rollback_savepoint")
    def _on_rollback_savepoint(conn, _name, _context) -> None:
        _forget_prepared(conn)

    @event.listens_for(engine, "reset")
    def _on_reset(dbapi_conn, _record, _state) -> None:  # returned to the pool
        if dbapi_conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            pgpipe.forget(dbapi_conn)


_ORJSON = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def _not_json(value: object) -> object:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def json_text(value: object) -> str:
    """A JSON column's value as the text stored (the engines' `json_serializer`).

    orjson, at a fraction of `json.dumps`'s CPU (a notification writes three to
    five JSON values: its headers, its answer, its tickets' entitlements), and as
    strict where it matters: a datetime or a dataclass is refused, as `json.dumps`
    refuses them, not written in a form of orjson's choosing. The text is compact
    and UTF-8 where `json.dumps` put spaces after separators and escaped non-ASCII:
    the same JSON, read back to the same value (PostgreSQL's `json` keeps the text
    as sent).
    """
    return orjson.dumps(value, default=_not_json, option=_ORJSON).decode()


def _sqlite_file(url: URL) -> str | None:
    """The file a SQLite URL names; None for an in-memory database or another backend."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return url.database


def make_engine(url: str, *, pool_size: int = 10, max_overflow: int = 10) -> Engine:
    """Create an engine for `url` with the settings this service relies on."""
    url = sqlalchemy_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = _sqlite_file(parsed)
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_SECONDS,
                          "factory": _SqliteConnection},
            pool_size=pool_size,
            max_overflow=max_overflow,
            json_serializer=json_text,
        )
        _prepare_sqlite(engine, writer_lock(path) if path is not None else None)
        return engine
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_reset_on_return="rollback",
        json_serializer=json_text,
    )
    _prepare_postgresql(engine)
    return engine


class Database:
    """An engine plus the transaction boundary used by every entry point."""

    def __init__(self, url: str, *, pool_size: int = 10, max_overflow: int = 10) -> None:
        self.engine = make_engine(url, pool_size=pool_size, max_overflow=max_overflow)
        self.dialect = self.engine.dialect.name
        path = _sqlite_file(self.engine.url)  # the lock make_engine gave its connections
        self._writer = writer_lock(path) if path is not None else None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False, autoflush=False)
        self._read_sessions = sessionmaker(
            self.engine.execution_options(**{READONLY: True}),
            expire_on_commit=False,
            autoflush=False,
        )

    @contextmanager
    def transaction(self, *, readonly: bool = False) -> Iterator[Session]:
        """A session whose work commits at the end of the block, or rolls back on error."""
        factory = self._read_sessions if readonly else self._sessions
        with factory() as session:
            with session.begin():
                yield session
                _end_work(session)

    def held(self) -> HeldConnection:
        """A connection kept between transactions run one at a time (`HeldConnection`)."""
        return HeldConnection(self)

    def writer_turn(self) -> AbstractContextManager[None]:
        """SQLite: one writer lock held across this thread's transactions in the block
        (`WriterLock.turn`); PostgreSQL, which locks rows, not the database: nothing."""
        return self._writer.turn() if self._writer is not None else nullcontext()

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


class HeldConnection:
    """A connection kept between the transactions of a user that runs them one at a
    time: a group commit, whose batches follow each other back to back under load.

    `Database.transaction()` takes a connection from the pool and gives it back, and
    wraps it in a session's transaction, every time: measured, 580 µs of CPU for a
    transaction of one pipelined statement, against 340 µs for the same on a kept
    connection with a bare session joined to its transaction. `transaction()` here is
    that, with the same promise: the block's work commits when it ends normally
    (after the work queued by `run_last`) and rolls back on any exception.

    The connection goes back to the pool on `release` (the group commit releases it
    before a request it handles alone, which takes a connection of its own, and when
    nobody waits) and after a failed transaction: it may be cut (a backend terminated
    while it was kept is found only by using it: that transaction fails, and its
    requests are handled alone, each on a connection of its own), and the next one
    comes from the pool with the pool's checks. Not for concurrent use.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._conn: Connection | None = None

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        conn = self._conn
        if conn is None or conn.closed or conn.invalidated:
            conn = self._conn = self._db.engine.connect()
        try:
            with conn.begin():
                session = Session(bind=conn, autoflush=False, expire_on_commit=False)
                try:
                    yield session
                    _end_work(session)
                finally:
                    session.close()
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Give the connection back to the pool, if one is kept."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
