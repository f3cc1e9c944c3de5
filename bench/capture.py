"""What the service sends to its database per request, and the same SQL without the service.

- Statements: SQLAlchemy's `before_cursor_execute` event, with COMMIT and ROLLBACK
  from the engine's transaction events.
- Round trips (PostgreSQL): libpq's own trace of the wire protocol; every `Query` or
  `Sync` message the client sends is one wait for the server. It also sees what no
  SQLAlchemy event does: psycopg's separate BEGIN and the pool's pre-ping.
- The SQLite limit: the exact statements the service ran for each notification,
  replayed through Python's `sqlite3` in one tight loop with the service's pragmas.
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

with warnings.catch_warnings():  # starlette's notice that it prefers httpx2: harmless here
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient
from sqlalchemy import Engine, event

from bench.server import backends_cpu, backends_delta
from ticketing.api.app import create_app
from ticketing.db import Database
from ticketing.settings import Settings

# The connection set-up of ticketing.db for SQLite; BEGIN IMMEDIATE comes with the
# captured statements, since the service issues it as a statement of its own.
SQLITE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL",
                  "PRAGMA foreign_keys=ON", "PRAGMA busy_timeout=30000")

Request = tuple[str, str, dict[str, str], bytes | None]


@dataclass(frozen=True)
class Statement:
    """One statement as the driver received it (`many`: executemany, or one batch of it)."""

    sql: str
    params: Any
    many: bool
    at: float = 0.0  # perf_counter when sent


class StatementLog:
    """Every statement an engine sends, in order, with its parameters."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.statements: list[Statement] = []
        event.listen(engine, "before_cursor_execute", self._execute)
        event.listen(engine, "commit", self._commit)
        event.listen(engine, "rollback", self._rollback)

    def _execute(self, _conn: Any, _cursor: Any, sql: str, params: Any, _ctx: Any,
                 many: bool) -> None:
        self.statements.append(Statement(sql, params, many, time.perf_counter()))

    def _commit(self, _conn: Any) -> None:
        if self.statements and self.statements[-1].sql == "COMMIT":
            return  # sent with the transaction's last pipeline: SQLAlchemy's sends nothing
        self.statements.append(Statement("COMMIT", (), False, time.perf_counter()))

    def _rollback(self, _conn: Any) -> None:
        self.statements.append(Statement("ROLLBACK", (), False, time.perf_counter()))

    def take(self) -> list[Statement]:
        """The statements since the last take."""
        taken, self.statements = self.statements, []
        return taken

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._execute)
        event.remove(self.engine, "commit", self._commit)
        event.remove(self.engine, "rollback", self._rollback)


@contextmanager
def wire_trace(engine: Engine) -> Iterator[Path]:
    """libpq's protocol trace of every new connection of `engine`, into one file."""
    from psycopg import pq

    fd, name = tempfile.mkstemp(prefix="bench-libpq-", suffix=".trace")

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.pgconn.trace(fd)
        dbapi_conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)

    event.listen(engine, "connect", on_connect)
    try:
        yield Path(name)
    finally:
        event.remove(engine, "connect", on_connect)
        os.close(fd)
        os.unlink(name)


def _client_messages(trace: Path) -> list[str]:
    return [line.split("\t")[2].strip() for line in trace.read_text().splitlines()
            if line.startswith("F\t") and line.count("\t") >= 2]


def bench_settings(url: str) -> Settings:
    """The production settings, minus the expiry job (it would add statements of its own)."""
    return Settings(database_url=url, log_format="json", log_level="WARNING",
                    expiry_interval_seconds=0, admin_token="bench-admin-token")


def _send(client: TestClient, request: Request) -> None:
    method, target, headers, body = request
    resp = client.request(method, target, headers=headers, content=body)
    if resp.status_code != 200:
        raise RuntimeError(f"{method} {target}: {resp.status_code} {resp.text}")


def per_request(url: str, requests: list[Request], *, warmup: int = 5) -> dict[str, Any]:
    """Statements, commits and (PostgreSQL) round trips per request, through the app in-process.

    Also how long each request holds the hottest rows: from its first `UPDATE products`
    (a product's stock row, which every order and payment of that product updates) to
    its COMMIT, in statements and in milliseconds with nothing else running.
    """
    db = Database(url, pool_size=2)
    log = StatementLog(db.engine)
    with ExitStack() as stack:
        stack.callback(db.dispose)
        stack.callback(log.close)
        trace = (stack.enter_context(wire_trace(db.engine)) if db.dialect == "postgresql"
                 else None)
        client = stack.enter_context(TestClient(create_app(bench_settings(url), database=db)))
        for request in requests[:warmup]:
            _send(client, request)
        log.take()
        seen = len(_client_messages(trace)) if trace else 0
        each: list[list[Statement]] = []
        walls: list[float] = []
        dbname = db.engine.url.database if db.dialect == "postgresql" else None
        pg_cpu = backends_cpu(dbname) if dbname else None
        for request in requests[warmup:]:
            started = time.perf_counter()
            _send(client, request)
            walls.append(time.perf_counter() - started)
            each.append(log.take())
        pg_cpu = None if pg_cpu is None else backends_delta(pg_cpu, backends_cpu(dbname))
        sent = Counter(_client_messages(trace)[seen:]) if trace else None
    counted = len(each)
    statements = [s for one in each for s in one]
    work = [s for s in statements if s.sql not in ("COMMIT", "ROLLBACK")]
    holds = [h for h in map(_hot_row_hold, each) if h is not None]
    return {
        "requests": counted,
        "statements_per_request": round(len(work) / counted, 2),
        "commits_per_request": round(sum(s.sql == "COMMIT" for s in statements) / counted, 2),
        # every Query (BEGIN, pre-ping) or Sync (end of an extended-protocol exchange)
        "round_trips_per_request": (round((sent["Query"] + sent["Sync"]) / counted, 2)
                                    if sent is not None else None),
        "in_process_ms_median": round(statistics.median(walls) * 1000, 3),
        # the database's own CPU per request, one request at a time (no lock waits)
        "postgres_cpu_ms_alone": None if pg_cpu is None else round(pg_cpu * 1000 / counted, 3),
        "hot_row_statements_before_commit": (statistics.median(h[0] for h in holds)
                                             if holds else None),
        "hot_row_hold_ms_median": (round(statistics.median(h[1] for h in holds) * 1000, 3)
                                   if holds else None),
        "one_request": [" ".join(s.sql.split())[:160] for s in each[0]] if each else [],
    }


def _hot_row_hold(statements: list[Statement]) -> tuple[int, float] | None:
    first = next((i for i, s in enumerate(statements) if s.sql.startswith("UPDATE products")
                  or s.sql.startswith("WITH changed AS (UPDATE products")), None)
    if first is None:
        return None
    end = next(i for i in range(first, len(statements)) if statements[i].sql == "COMMIT")
    return end - first, statements[end].at - statements[first].at


def capture_sequences(db: Database, run: Any) -> list[list[Statement]]:
    """The statements each call of `run()` sent, one list per call, in call order."""
    log = StatementLog(db.engine)
    sequences = []
    try:
        for call in run:
            log.take()
            call()
            sequences.append(log.take())
    finally:
        log.close()
    return sequences


def replay(path: Path, sequences: list[list[Statement]]) -> dict[str, Any]:
    """Run the captured statements through `sqlite3` in one tight loop; the SQLite limit."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
    for pragma in SQLITE_PRAGMAS:
        conn.execute(pragma)
    cur = conn.cursor()
    cpu, started = time.process_time(), time.perf_counter()
    for sequence in sequences:
        for st in sequence:
            if st.many and isinstance(st.params, list):
                cur.executemany(st.sql, st.params)
            else:
                cur.execute(st.sql, st.params)
            if cur.description is not None:
                cur.fetchall()
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    conn.close()
    return {"requests": len(sequences), "seconds": round(elapsed, 4),
            "per_second": round(len(sequences) / elapsed, 2),
            "cpu_ms_per_request": round(cpu * 1000 / len(sequences), 3),
            "statements_per_request": round(
                sum(len(s) for s in sequences) / max(len(sequences), 1), 2)}


def sqlite_backup(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database (the online backup API)."""
    target.unlink(missing_ok=True)
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    dst.close()
    src.close()
