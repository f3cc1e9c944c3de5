"""Fixtures: every storage test runs on SQLite and on a real PostgreSQL, via migrations.

PostgreSQL comes from TICKETING_TEST_DATABASE_URL (a server URL whose user may
create databases) or from a throwaway cluster started with the `pg_ctl` on PATH.
If neither works the suite fails: a storage test never silently skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from tests.pgcluster import Cluster, free_port
from ticketing.api.app import create_app
from ticketing.db import Database
from ticketing.migrate import upgrade
from ticketing.settings import Settings
from ticketing.tenant.demo import load_demo

ADMIN_TOKEN = "test-admin-token"
TABLES_IN_DELETE_ORDER = None  # filled lazily from the metadata
REPO = Path(__file__).resolve().parent.parent


def _conninfo(url: str, dbname: str | None = None) -> str:
    u = make_url(url)
    return (f"host={u.host or '127.0.0.1'} port={u.port or 5432} user={u.username or 'postgres'} "
            f"dbname={dbname or u.database or 'postgres'}"
            + (f" password={u.password}" if u.password else ""))


def _with_db(url: str, dbname: str) -> str:
    return make_url(url).set(database=dbname).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A PostgreSQL server URL this suite may create databases on."""
    url = os.environ.get("TICKETING_TEST_DATABASE_URL")
    cluster = None
    if not url:
        cluster = Cluster()
        url = cluster.start()
    try:
        with psycopg.connect(_conninfo(url), autocommit=True, connect_timeout=10) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # fail, never skip
        raise RuntimeError(f"PostgreSQL is required for the test suite: {exc}") from exc
    yield url
    if cluster is not None:
        cluster.stop()


@pytest.fixture(scope="session")
def pg_template(pg_server: str) -> str:
    """A database migrated once; each test gets a copy of it."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"ticketing_tpl_{worker}_{os.getpid()}"
    with psycopg.connect(_conninfo(pg_server), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    upgrade(_with_db(pg_server, name))
    return name


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


_counter = iter(range(1, 10**9))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A freshly migrated, empty database of each kind."""
    if request.param == "sqlite":
        path = tmp_path / "ticketing.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    server = request.getfixturevalue("pg_server")
    template = request.getfixturevalue("pg_template")
    name = f"t_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(_conninfo(server), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    yield _with_db(server, name)
    with psycopg.connect(_conninfo(server), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(request: pytest.FixtureRequest, pg_server: str, pg_template: str) -> Iterator[str]:
    """A freshly migrated PostgreSQL database (for tests that need real concurrency)."""
    name = f"t_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(_conninfo(pg_server), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    yield _with_db(pg_server, name)
    with psycopg.connect(_conninfo(pg_server), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_settings(url: str, tmp_path: Path, **overrides) -> Settings:
    values = dict(database_url=url, admin_token=ADMIN_TOKEN, log_format="console",
                  log_level="WARNING", expiry_interval_seconds=0, fault_injection=True,
                  fault_state_path=str(tmp_path / "faults.json"))
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return make_settings(db_url, tmp_path)


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings.database_url, pool_size=5)
    with database.transaction() as session:
        load_demo(session)
    yield database
    database.dispose()


@pytest.fixture
def client(settings: Settings, db: Database) -> Iterator[TestClient]:
    """The app in-process, on a fresh database with the demo data."""
    app = create_app(settings, database=db)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


class LiveServer:
    """`ticketing serve` in a subprocess, as in production."""

    def __init__(self, url: str, tmp_path: Path, workers: int = 2, **env: str) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / f"server-{self.port}.log"
        self.env = {**os.environ, "TICKETING_DATABASE_URL": url,
                    "TICKETING_ADMIN_TOKEN": ADMIN_TOKEN, "TICKETING_LOG_FORMAT": "json",
                    "TICKETING_LOG_LEVEL": "WARNING", "TICKETING_EXPIRY_INTERVAL_SECONDS": "0",
                    "TICKETING_FAULT_STATE_PATH": str(tmp_path / "faults.json"), **env}
        self.workers = workers
        self.proc: subprocess.Popen | None = None

    def start(self) -> LiveServer:
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ticketing.cli.main", "serve", "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", str(self.workers)],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log_path.read_text()}")
            try:
                if httpx.get(self.base_url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"server did not start:\n{self.log_path.read_text()}")

    def stop(self, sig: int = 15) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self.log.close()


@pytest.fixture
def live_server_factory(tmp_path: Path) -> Iterator:
    """Start real server processes on a migrated database with the demo data."""
    servers: list[LiveServer] = []

    def start(url: str, workers: int = 2, load_demo_data: bool = True, **env: str) -> LiveServer:
        if load_demo_data:
            database = Database(url, pool_size=1)
            with database.transaction() as session:
                load_demo(session)
            database.dispose()
        server = LiveServer(url, tmp_path, workers, **env).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
