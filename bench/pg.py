"""PostgreSQL for the benchmark, and pgbench on it: the limit the service is measured against.

A throwaway cluster (tests/pgcluster.py) unless TICKETING_BENCH_DATABASE_URL names a
server whose user may create databases. pgbench and the service use the same server
with the same settings; durability stays at the defaults (fsync, synchronous_commit on).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from tests.pgcluster import Cluster, _tool

STATEMENT_STATS = (
    "SELECT calls, total_exec_time, total_plan_time, "
    "left(regexp_replace(query, '\\s+', ' ', 'g'), 100) FROM pg_stat_statements "
    "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND query NOT LIKE '%pg_stat%' ORDER BY total_exec_time + total_plan_time DESC LIMIT 15")
SETTINGS = ("server_version", "fsync", "synchronous_commit", "wal_sync_method",
            "shared_buffers", "max_connections", "full_page_writes")


class Postgres:
    """A PostgreSQL server the benchmark may create databases on."""

    def __init__(self) -> None:
        self.cluster: Cluster | None = None
        url = os.environ.get("TICKETING_BENCH_DATABASE_URL")
        if not url:
            self.cluster = Cluster()
            url = self.cluster.start()
        self.server_url = url
        parsed = make_url(url)
        self.host, self.port = parsed.host or "127.0.0.1", parsed.port or 5432
        self.user, self.password = parsed.username or "postgres", parsed.password

    def conninfo(self, dbname: str = "postgres") -> str:
        """A libpq connection string for `dbname` on this server."""
        info = f"host={self.host} port={self.port} user={self.user} dbname={dbname}"
        return info + (f" password={self.password}" if self.password else "")

    def url(self, dbname: str) -> str:
        """The service's `postgresql://` URL for `dbname`."""
        return make_url(self.server_url).set(database=dbname).render_as_string(
            hide_password=False)

    def execute(self, sql: str, params: Any = None,
                dbname: str = "postgres") -> list[tuple[Any, ...]]:
        """Run one statement in autocommit; its rows, if any."""
        with psycopg.connect(self.conninfo(dbname), autocommit=True) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def recreate(self, dbname: str, template: str | None = None) -> str:
        """Drop and create `dbname` (a copy of `template` when given); its URL."""
        self.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        suffix = f' TEMPLATE "{template}"' if template else ""
        self.execute(f'CREATE DATABASE "{dbname}"{suffix}')
        return self.url(dbname)

    def settings(self) -> dict[str, str]:
        """The server settings a reader of the results needs to judge them."""
        rows = self.execute("SELECT name, setting, unit FROM pg_settings WHERE name = ANY(%s)",
                            (list(SETTINGS),))
        return {name: f"{setting}{unit or ''}" for name, setting, unit in rows}

    def with_statement_stats(self) -> bool:
        """Restart the throwaway cluster with pg_stat_statements loaded (profile mode only).

        pg_ctl restart keeps the cluster's command-line options; ALTER SYSTEM adds the
        library. A server this benchmark did not start is left as it is.
        """
        if self.cluster is None:
            return False
        self.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        self.cluster._run(_tool("pg_ctl"), "-D", str(self.cluster.data), "-l",
                          str(self.cluster.base / "log"), "-w", "-t", "60", "restart")
        self.execute("ALTER SYSTEM SET pg_stat_statements.track_planning = on")
        self.execute("SELECT pg_reload_conf()")
        return True

    def statement_stats(self, dbname: str, *, reset: bool = False,
                        per: int = 1) -> list[dict[str, Any]] | None:
        """Time each statement took inside the database (execution includes lock waits)."""
        try:
            self.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", dbname=dbname)
            if reset:
                self.execute("SELECT pg_stat_statements_reset()", dbname=dbname)
                return []
            rows = self.execute(STATEMENT_STATS, dbname=dbname)
        except psycopg.Error:
            return None  # the library is not loaded on this server
        return [{"calls": calls, "exec_ms_per_request": round(float(ex) / max(per, 1), 3),
                 "plan_ms_per_request": round(float(pl) / max(per, 1), 3),
                 "mean_exec_ms": round(float(ex) / max(calls, 1), 3), "statement": query}
                for calls, ex, pl, query in rows]

    @property
    def postmaster_pid(self) -> int | None:
        """The postmaster's pid when this benchmark started the cluster (for CPU accounting)."""
        if self.cluster is None:
            return None
        return int((self.cluster.data / "postmaster.pid").read_text().split("\n", 1)[0])

    def stop(self) -> None:
        """Stop the throwaway cluster, if this benchmark started one."""
        if self.cluster is not None:
            self.cluster.stop()

    def _pgbench(self, *args: str) -> str:
        env = {**os.environ, **({"PGPASSWORD": self.password} if self.password else {})}
        cmd = [_tool("pgbench"), "-h", self.host, "-p", str(self.port), "-U", self.user, *args]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=Path("/tmp"))
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
        return out.stdout + out.stderr

    def pgbench_init(self, dbname: str, scale: int) -> None:
        """`pgbench -i -s scale` into a fresh database of its own."""
        self.recreate(dbname)
        self._pgbench("-i", "-q", "-s", str(scale), dbname)

    def pgbench(self, dbname: str, clients: int, seconds: float, *,
                select_only: bool = False) -> dict[str, Any]:
        """Run pgbench (TPC-B, or select-only with `select_only`); tps and latency."""
        args = ["-c", str(clients), "-j", str(min(2, clients)), "-T", str(int(seconds))]
        text = self._pgbench(*args, *(["-S"] if select_only else []), dbname)
        tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", text)
        lat = re.search(r"latency average = ([\d.]+) ms", text)
        failed = re.search(r"number of failed transactions: (\d+)", text)
        if tps is None:
            raise RuntimeError(f"no tps in pgbench output:\n{text}")
        return {"tps": float(tps.group(1)),
                "latency_avg_ms": float(lat.group(1)) if lat else None,
                "failed": int(failed.group(1)) if failed else 0}
