"""Engines and transactions for SQLite and PostgreSQL.

One transaction per entry point: `Database.transaction()` commits when its block
ends normally and rolls back on any exception. Services only flush.

SQLite: WAL journal, a busy timeout, and `BEGIN IMMEDIATE` for writing
transactions, so concurrent writers queue for the lock instead of failing with
"database is locked" halfway through or upgrading a read lock too late.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

READONLY = "ticketing_readonly"
_LAST = "ticketing_run_last"


def run_last(session: Session, work: Callable[[Session], None]) -> None:
    """Queue `work` to run as the transaction's last statements, just before COMMIT.

    A hot row (a product's stock counters, touched by every sale of it) stays locked
    from its UPDATE until COMMIT; updating it last holds that lock for one statement
    and the commit instead of the whole transaction.
    """
    session.info.setdefault(_LAST, []).append(work)


def sqlalchemy_url(url: str) -> str:
    """Map the contract's `postgresql://` and `sqlite:///` URLs to SQLAlchemy drivers."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def _prepare_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # pragma: no cover - driver hook
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        if conn.get_execution_options().get(READONLY):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, *, pool_size: int = 10, max_overflow: int = 10) -> Engine:
    """Create an engine for `url` with the settings this service relies on."""
    url = sqlalchemy_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
            max_overflow=max_overflow,
        )
        _prepare_sqlite(engine)
        return engine
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
        pool_reset_on_return="rollback",
    )


class Database:
    """An engine plus the transaction boundary used by every entry point."""

    def __init__(self, url: str, *, pool_size: int = 10, max_overflow: int = 10) -> None:
        self.engine = make_engine(url, pool_size=pool_size, max_overflow=max_overflow)
        self.dialect = self.engine.dialect.name
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
                for work in session.info.pop(_LAST, ()):
                    work(session)

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
