"""The `ticketing` CLI: migrations and demo data, as `make run` uses them."""

import os
import subprocess
import sys

import psycopg


def run(*args, url):
    env = {**os.environ, "TICKETING_DATABASE_URL": url}
    return subprocess.run([sys.executable, "-m", "ticketing.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_upgrade_and_demo_are_idempotent_on_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'var' / 'ticketing.db'}"
    for _ in range(2):
        assert run("db", "upgrade", url=url).returncode == 0
    first = run("demo", url=url)
    assert first.returncode == 0 and "product 101" in first.stdout
    second = run("demo", url=url)
    assert second.returncode == 0 and "nothing changed" in second.stdout


def test_upgrade_and_demo_on_postgresql(pg_server):
    from tests.conftest import _conninfo, _with_db

    with psycopg.connect(_conninfo(pg_server), autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "cli_test"')
        conn.execute('CREATE DATABASE "cli_test"')
    url = _with_db(pg_server, "cli_test")
    assert run("db", "upgrade", url=url).returncode == 0
    assert run("demo", url=url).returncode == 0
    assert "nothing changed" in run("demo", url=url).stdout
    with psycopg.connect(_conninfo(pg_server, "cli_test")) as conn:
        assert conn.execute("SELECT count(*) FROM products").fetchone()[0] == 2


def test_usage_errors_exit_non_zero():
    result = subprocess.run([sys.executable, "-m", "ticketing.cli.main", "nope"],
                            capture_output=True, text=True)
    assert result.returncode != 0
