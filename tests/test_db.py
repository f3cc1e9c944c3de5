"""The transaction boundary: SQLite's writer lock, and PostgreSQL connections cut while pooled."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from tests.conftest import _conninfo
from tests.sqlite_lock import lock_is_free, writer_lock_held
from ticketing.db import Database


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    path = tmp_path / "writer.db"
    db = Database(f"sqlite:///{path}", pool_size=1)
    with db.transaction() as session:
        session.execute(text("CREATE TABLE writes (name TEXT NOT NULL)"))
    db.dispose()
    return path


def _write(db: Database, name: str) -> None:
    with db.transaction() as session:
        session.execute(text("INSERT INTO writes (name) VALUES (:n)"), {"n": name})


def test_sqlite_writers_wait_for_another_process_holding_the_writer_lock(sqlite_file):
    db = Database(f"sqlite:///{sqlite_file}", pool_size=2)
    with writer_lock_held(sqlite_file) as holder:
        done = threading.Event()
        writer = threading.Thread(target=lambda: (_write(db, "queued"), done.set()))
        writer.start()
        assert not done.wait(0.5), "the writer did not wait for the writer lock"
        with db.transaction(readonly=True) as session:  # readers never queue
            assert session.execute(text("SELECT count(*) FROM writes")).scalar_one() == 0
        holder.release()
        assert done.wait(10), "the writer never got the lock once it was free"
        writer.join()
    with db.transaction(readonly=True) as session:
        assert session.execute(text("SELECT name FROM writes")).scalars().all() == ["queued"]
    db.dispose()


def test_sqlite_writer_lock_is_held_from_begin_to_commit_or_rollback(sqlite_file):
    db = Database(f"sqlite:///{sqlite_file}", pool_size=2)
    assert lock_is_free(sqlite_file)
    with db.transaction() as session:
        assert lock_is_free(sqlite_file)  # taken with the first statement, not before
        session.execute(text("SELECT 1"))
        assert not lock_is_free(sqlite_file)
    assert lock_is_free(sqlite_file)
    with pytest.raises(RuntimeError), db.transaction() as session:
        session.execute(text("INSERT INTO writes (name) VALUES ('gone')"))
        assert not lock_is_free(sqlite_file)
        raise RuntimeError("roll back")
    assert lock_is_free(sqlite_file)
    with db.transaction(readonly=True) as session:
        assert session.execute(text("SELECT count(*) FROM writes")).scalar_one() == 0
        assert lock_is_free(sqlite_file)
    db.dispose()


def test_a_writer_turn_holds_the_lock_across_its_transactions(sqlite_file):
    db = Database(f"sqlite:///{sqlite_file}", pool_size=2)
    other = Database(f"sqlite:///{sqlite_file}", pool_size=2)  # another engine: another writer
    done = threading.Event()
    with db.writer_turn():
        assert not lock_is_free(sqlite_file)  # from the start of the turn, not its first BEGIN
        _write(db, "first")
        assert not lock_is_free(sqlite_file)  # still held between its transactions
        writer = threading.Thread(target=lambda: (_write(other, "other"), done.set()))
        writer.start()
        with db.writer_turn():  # a turn inside a turn: the same hold
            _write(db, "nested")
        with pytest.raises(RuntimeError), db.transaction() as session:
            session.execute(text("INSERT INTO writes (name) VALUES ('rolled back')"))
            raise RuntimeError("roll back")
        _write(db, "last")
        assert not done.wait(0.3), "another writer got in during the turn"
        assert not lock_is_free(sqlite_file)
    assert done.wait(10), "the other writer never got the lock after the turn"
    writer.join()
    assert lock_is_free(sqlite_file)
    with db.transaction(readonly=True) as session:
        assert session.execute(text("SELECT name FROM writes ORDER BY rowid")).scalars().all() \
            == ["first", "nested", "last", "other"]
    db.dispose()
    other.dispose()


def test_a_writer_turn_waits_for_another_process_then_takes_the_lock(sqlite_file):
    db = Database(f"sqlite:///{sqlite_file}", pool_size=2)
    entered = threading.Event()

    def turn() -> None:
        with db.writer_turn():
            entered.set()
            _write(db, "after the holder")

    with writer_lock_held(sqlite_file) as holder:
        thread = threading.Thread(target=turn)
        thread.start()
        assert not entered.wait(0.3), "the turn began while another process held the lock"
        holder.release()
        assert entered.wait(10)
        thread.join()
    assert lock_is_free(sqlite_file)
    db.dispose()


def test_a_writer_turn_on_postgresql_locks_nothing(pg_url):
    """PostgreSQL locks rows, not the database: two turns of two threads run at once."""
    db = Database(pg_url, pool_size=2)
    both_in = threading.Barrier(2, timeout=10)

    def turn(name: str) -> None:
        with db.writer_turn():
            both_in.wait()  # broken (and raising) unless the other thread is inside too
            with db.transaction() as session:
                session.execute(text("SELECT 1"))

    threads = [threading.Thread(target=turn, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not both_in.broken
    db.dispose()


def test_sqlite_writers_of_many_threads_all_commit(sqlite_file):
    db = Database(f"sqlite:///{sqlite_file}", pool_size=8)
    other = Database(f"sqlite:///{sqlite_file}", pool_size=8)  # a second engine, same file
    errors: list[BaseException] = []

    def work(database: Database, prefix: str) -> None:
        try:
            for i in range(20):
                _write(database, f"{prefix}-{i}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(db if n % 2 else other, f"t{n}"))
               for n in range(8)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert time.monotonic() - started < 30
    with db.transaction(readonly=True) as session:
        assert session.execute(text("SELECT count(*) FROM writes")).scalar_one() == 160
    assert lock_is_free(sqlite_file)
    db.dispose()
    other.dispose()


def test_sqlite_writes_go_on_where_no_lock_file_can_be_made(tmp_path):
    path = tmp_path / "nolock.db"
    (tmp_path / "nolock.db-writer.lock").mkdir()  # taken by something that is not a file
    db = Database(f"sqlite:///{path}", pool_size=2)
    with db.transaction() as session:
        session.execute(text("CREATE TABLE writes (name TEXT NOT NULL)"))
    threads = [threading.Thread(target=_write, args=(db, f"w{n}")) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with db.transaction(readonly=True) as session:
        assert session.execute(text("SELECT count(*) FROM writes")).scalar_one() == 4
    db.dispose()


def test_a_pooled_postgresql_connection_cut_by_the_server_is_replaced_unseen(pg_url):
    db = Database(pg_url, pool_size=1, max_overflow=0)
    with db.transaction(readonly=True) as session:
        first = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with psycopg.connect(_conninfo(pg_url), autocommit=True) as conn:
        assert conn.execute("SELECT pg_terminate_backend(%s, 5000)", (first,)).fetchone()[0]
    with db.transaction() as session:  # no error: the dead connection never reaches a request
        second = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    assert second != first
    db.dispose()



def test_json_columns_are_written_by_orjson_and_read_back_alike(db):
    """`json_text` on both databases: the value read back is the value written (non-ASCII
    text, an IntEnum, nesting); what `json.dumps` refuses is refused before it is sent."""
    import dataclasses
    from datetime import datetime, timezone

    from sqlalchemy import insert, select
    from sqlalchemy.exc import StatementError

    from ticketing.kit.clock import utcnow
    from ticketing.models import GatewayConfig, Tenant
    from ticketing.order.state import PayState

    value = {"name": "三合一交通卡 · Café", "state": PayState.PAID, "nested": [{"a": None}, True]}

    def add(gateway: str, config: object) -> None:
        with db.transaction() as session:
            tenant = session.execute(select(Tenant.id).where(Tenant.slug == "default")).scalar_one()
            session.execute(insert(GatewayConfig).values(
                tenant_id=tenant, gateway=gateway, config=config, secrets={}, updated_at=utcnow()))

    add("json-test", value)
    with db.transaction(readonly=True) as session:
        stored = session.execute(select(GatewayConfig.config)
                                 .where(GatewayConfig.gateway == "json-test")).scalar_one()
        raw = session.execute(text("SELECT config FROM gateway_configs "
                                   "WHERE gateway = 'json-test'")).scalar_one()
    assert stored == {**value, "state": 2}
    if isinstance(raw, str):  # SQLite hands back the text; PostgreSQL's json, the value
        assert raw == '{"name":"三合一交通卡 · Café","state":2,"nested":[{"a":null},true]}'

    @dataclasses.dataclass
    class Point:
        x: int

    for n, refused in enumerate(({"at": datetime.now(timezone.utc)}, {"p": Point(1)},
                                 {"s": {1, 2}})):
        with pytest.raises((StatementError, TypeError), match="not JSON serializable"):
            add(f"refused-{n}", refused)


def _config_rows(db: Database, gateway: str) -> int:
    with db.transaction(readonly=True) as session:
        return session.execute(text("SELECT count(*) FROM gateway_configs WHERE gateway = :g"),
                               {"g": gateway}).scalar_one()


def _add_config(session, gateway: str) -> None:
    session.execute(text(
        "INSERT INTO gateway_configs (tenant_id, gateway, config, secrets, updated_at) "
        "SELECT id, :g, '{}', '{}', CURRENT_TIMESTAMP FROM tenants WHERE slug = 'default'"),
        {"g": gateway})


def test_a_held_connection_is_kept_between_transactions_and_given_back(db):
    """`Database.held()`: transactions back to back on one pooled connection, each
    committed with its `run_last` work, or rolled back whole (the connection then
    goes back to the pool); `release` gives it back."""
    from ticketing.db import run_last

    pool = db.engine.pool
    held = db.held()
    seen = []
    for n in range(3):
        with held.transaction() as session:
            seen.append(id(session.connection().connection.dbapi_connection))
            _add_config(session, f"held-{n}")
            run_last(session, lambda s, n=n: _add_config(s, f"held-last-{n}"))
        assert pool.checkedout() == 1
    assert len(set(seen)) == 1
    assert [_config_rows(db, f"held-{n}") + _config_rows(db, f"held-last-{n}")
            for n in range(3)] == [2, 2, 2]
    with pytest.raises(RuntimeError):
        with held.transaction() as session:
            _add_config(session, "held-failed")
            raise RuntimeError("the batch failed")
    assert _config_rows(db, "held-failed") == 0 and pool.checkedout() == 0
    with held.transaction() as session:  # a connection from the pool again
        _add_config(session, "held-after")
    assert _config_rows(db, "held-after") == 1 and pool.checkedout() == 1
    held.release()
    assert pool.checkedout() == 0


def test_a_held_connection_cut_by_the_server_fails_one_transaction_then_is_replaced(pg_url):
    """A backend terminated while its connection was kept is found by the next
    transaction, which fails (a group commit then handles its requests alone); the
    one after runs on a fresh connection."""
    from sqlalchemy.exc import DBAPIError

    db = Database(pg_url, pool_size=1, max_overflow=0)
    held = db.held()
    with held.transaction() as session:
        first = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with psycopg.connect(_conninfo(pg_url), autocommit=True) as conn:
        assert conn.execute("SELECT pg_terminate_backend(%s, 5000)", (first,)).fetchone()[0]
    with pytest.raises(DBAPIError):
        with held.transaction() as session:
            session.execute(text("SELECT 1"))
    with held.transaction() as session:
        second = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    assert second != first
    held.release()
    assert db.engine.pool.checkedout() == 0
    db.dispose()
