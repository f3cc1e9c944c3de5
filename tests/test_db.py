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
from ticketing.db import Database

# Holds the writer lock of the SQLite file argv[1] from another process until stdin closes.
HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1] + "-writer.lock", os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    path = tmp_path / "writer.db"
    db = Database(f"sqlite:///{path}", pool_size=1)
    with db.transaction() as session:
        session.execute(text("CREATE TABLE writes (name TEXT NOT NULL)"))
    db.dispose()
    return path


def _lock_is_free(path: Path) -> bool:
    """Whether another process could take the writer lock of `path` right now."""
    out = subprocess.run([sys.executable, "-c", (
        "import fcntl, os, sys\n"
        "fd = os.open(sys.argv[1] + '-writer.lock', os.O_RDWR | os.O_CREAT)\n"
        "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "except BlockingIOError:\n    sys.exit(1)\n"), str(path)], timeout=30)
    return out.returncode == 0


def _write(db: Database, name: str) -> None:
    with db.transaction() as session:
        session.execute(text("INSERT INTO writes (name) VALUES (:n)"), {"n": name})


def test_sqlite_writers_wait_for_another_process_holding_the_writer_lock(sqlite_file):
    db = Database(f"sqlite:///{sqlite_file}", pool_size=2)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(sqlite_file)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        done = threading.Event()
        writer = threading.Thread(target=lambda: (_write(db, "queued"), done.set()))
        writer.start()
        assert not done.wait(0.5), "the writer did not wait for the writer lock"
        with db.transaction(readonly=True) as session:  # readers never queue
            assert session.execute(text("SELECT count(*) FROM writes")).scalar_one() == 0
        holder.stdin.close()
        assert done.wait(10), "the writer never got the lock once it was free"
        writer.join()
    finally:
        holder.kill()
        holder.wait()
    with db.transaction(readonly=True) as session:
        assert session.execute(text("SELECT name FROM writes")).scalars().all() == ["queued"]
    db.dispose()


def test_sqlite_writer_lock_is_held_from_begin_to_commit_or_rollback(sqlite_file):
    db = Database(f"sqlite:///{sqlite_file}", pool_size=2)
    assert _lock_is_free(sqlite_file)
    with db.transaction() as session:
        assert _lock_is_free(sqlite_file)  # taken with the first statement, not before
        session.execute(text("SELECT 1"))
        assert not _lock_is_free(sqlite_file)
    assert _lock_is_free(sqlite_file)
    with pytest.raises(RuntimeError), db.transaction() as session:
        session.execute(text("INSERT INTO writes (name) VALUES ('gone')"))
        assert not _lock_is_free(sqlite_file)
        raise RuntimeError("roll back")
    assert _lock_is_free(sqlite_file)
    with db.transaction(readonly=True) as session:
        assert session.execute(text("SELECT count(*) FROM writes")).scalar_one() == 0
        assert _lock_is_free(sqlite_file)
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
    assert _lock_is_free(sqlite_file)
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

