"""One measured load: the load generator against a live server, with CPU and lock accounting."""

from __future__ import annotations

import importlib.util
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench import loadgen, seed
from bench.pg import Postgres
from bench.pgwait import WaitSampler
from bench.server import ROOT, CpuMeter, Server
from ticketing.db import Database


@dataclass
class Options:
    """How hard and how long to push."""

    clients: int
    seconds: float
    reps: int
    workers: int


def load(server: Server | list[Server], requests: list[seed.Request], opts: Options, *,
         cycle: bool, pg: Postgres | None = None, dbname: str | None = None,
         expect: str | None = None, seconds: float | None = None) -> dict[str, Any]:
    """Load one server (or several, connections split): rates, latency, CPU, connection spread."""
    servers = server if isinstance(server, list) else [server]
    roots = {"server": [s.pid for s in servers],
             "postgres": [pg.postmaster_pid if pg else None]}
    sampler = (WaitSampler(pg.conninfo(dbname), dbname) if pg and dbname else nullcontext())
    spread: list[list[int]] = []
    peek = threading.Timer(1.0, lambda: spread.append(
        sorted((n for s in servers for n in s.connections_per_worker()), reverse=True)))
    with CpuMeter(roots, dbname) as cpu, sampler:
        peek.start()
        result = loadgen.spawn([s.base_url for s in servers], seed.rendered(requests),
                               connections=opts.clients, seconds=seconds or opts.seconds,
                               cycle_requests=cycle, expect=expect)
        peek.cancel()
    result["connections_per_worker"] = spread[0] if spread else None
    done = max(result["requests"], 1)
    used = cpu.result
    known = sum(used.get(k) or 0 for k in ("server_cpu_seconds", "postgres_cpu_seconds"))
    result["cpu"] = {
        **used,
        "server_ms_per_request": _per(used.get("server_cpu_seconds"), done),
        "postgres_ms_per_request": _per(used.get("postgres_cpu_seconds"), done),
        "backends_ms_per_request": _per(used.get("backends_cpu_seconds"), done),
        "client_ms_per_request": _per(result["client_cpu_seconds"], done),
        # CPU of everything else on the machine: the noise this run had to share cores with
        "other_cpu_seconds": round(used["machine_busy_seconds"] - known
                                   - result["client_cpu_seconds"], 3),
    }
    if isinstance(sampler, WaitSampler):
        result["pg_backends"] = sampler.summary()
    return result


def _per(seconds: float | None, n: int) -> float | None:
    return None if seconds is None else round(seconds * 1000 / n, 3)


def median(values: list[float | None]) -> float | None:
    """Median of the values that exist."""
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def check_invariants(url: str, tenant_id: int) -> dict[str, Any]:
    """`ticketing check` when the checker exists, and this benchmark's own counts always."""
    result: dict[str, Any] = {"counts": own_counts(url, tenant_id)}
    if importlib.util.find_spec("ticketing.audit") is not None:
        out = subprocess.run([sys.executable, "-m", "ticketing.cli.main", "check"],
                             capture_output=True, text=True, cwd=ROOT,
                             env={**os.environ, "TICKETING_DATABASE_URL": url})
        result["ticketing_check"] = {"exit_code": out.returncode,
                                     "output": (out.stdout + out.stderr).strip()[-2000:]}
    result["ok"] = result["counts"]["ok"] and result.get("ticketing_check", {}).get(
        "exit_code", 0) == 0
    return result


COUNTS = {
    "paid_orders": "SELECT count(*) FROM orders WHERE tenant_id = :t AND status = 'PAID'",
    "units_paid": "SELECT coalesce(sum(i.quantity), 0) FROM order_items i JOIN orders o "
                  "ON o.id = i.order_id WHERE o.tenant_id = :t AND o.status = 'PAID'",
    "tickets_live": "SELECT count(*) FROM tickets WHERE tenant_id = :t AND status <> 'VOID'",
    "units_pending": "SELECT coalesce(sum(i.quantity), 0) FROM order_items i JOIN orders o "
                     "ON o.id = i.order_id WHERE o.tenant_id = :t AND o.status = 'PENDING'",
    "sold": "SELECT coalesce(sum(sold), 0) FROM products WHERE tenant_id = :t",
    "reserved": "SELECT coalesce(sum(reserved), 0) FROM products WHERE tenant_id = :t",
    "stock_gap": "SELECT coalesce(sum(stock + sold - stock_loaded), 0) FROM products "
                 "WHERE tenant_id = :t",
    "processed": "SELECT count(*) FROM notifications WHERE tenant_id = :t "
                 "AND outcome = 'processed'",
    "applied_payments": "SELECT count(*) FROM payment_transactions WHERE tenant_id = :t "
                        "AND applied",
}


def own_counts(url: str, tenant_id: int) -> dict[str, Any]:
    """Tickets issued == units paid == units sold; stock deducted once; one payment per order."""
    db = Database(url, pool_size=1)
    try:
        with db.transaction(readonly=True) as session:
            c = {k: int(session.execute(text(q), {"t": tenant_id}).scalar_one())
                 for k, q in COUNTS.items()}
    finally:
        db.dispose()
    c["ok"] = (c["tickets_live"] == c["units_paid"] == c["sold"]
               and c["reserved"] == c["units_pending"] and c["stock_gap"] == 0
               and c["paid_orders"] == c["applied_payments"] == c["processed"])
    return c


@contextmanager
def timed(phases: dict[str, float], name: str) -> Iterator[None]:
    """Record how long a phase of the run took (setup costs are part of the story)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        phases[name] = round(phases.get(name, 0.0) + time.perf_counter() - started, 2)


def log_dir() -> Path:
    """Where server logs of this run go (beside the results, git-ignored)."""
    path = ROOT / "bench" / "results" / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path
