"""The two benchmark suites: the service on PostgreSQL beside pgbench, and on SQLite beside
a plain `sqlite3` loop of its own statements.

Each repetition measures the limit and the service back to back, so the ratio of a
repetition is taken under the same noise (two shared cores); reported figures are
medians over repetitions.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from bench import capture, seed
from bench.measure import Options, check_invariants, load, log_dir, median, timed
from bench.pg import Postgres
from bench.server import CpuMeter, Server
from ticketing.db import Database

SERVICE_DB, PGBENCH_DB = "bench_service", "bench_pgbench"


Servers = Server | list[Server]


def warm_up(server: Servers, db: Database, bench: seed.Bench, opts: Options) -> None:
    """A few seconds of each request kind: pools filled, statement caches compiled."""
    mark = seed.last_order_id(db)
    load(server, seed.order_requests(), opts, cycle=True, seconds=3)
    pending = seed.pending_after(db, bench.tenant_id, mark)
    load(server, seed.notify_requests(pending, "warm"), opts, cycle=False, seconds=3)
    load(server, seed.ticket_requests(), opts, cycle=True, seconds=3)


def service_rep(server: Servers, db: Database, bench: seed.Bench, opts: Options, tag: str,
                pg: Postgres | None = None, dbname: str | None = None) -> dict[str, Any]:
    """Orders for `seconds`, then one notification per order just placed."""
    mark = seed.last_order_id(db)
    rep = {"orders": load(server, seed.order_requests(), opts, cycle=True, pg=pg, dbname=dbname)}
    pending = seed.pending_after(db, bench.tenant_id, mark)
    rep["notifications"] = load(server, seed.notify_requests(pending, tag), opts, cycle=False,
                                pg=pg, dbname=dbname, expect='"processed"')
    rep["notifications"]["orders_available"] = len(pending)
    return rep


def postgresql(pg: Postgres, opts: Options, scale: int) -> dict[str, Any]:
    """pgbench TPC-B and select-only, then the service, on one server, per repetition."""
    phases: dict[str, float] = {}
    with timed(phases, "prepare"):
        bench = seed.prepare(pg.recreate(SERVICE_DB))
        pg.pgbench_init(PGBENCH_DB, scale)
        db = bench.database()
        server = Server(bench.url, opts.workers, log_dir() / "server-postgresql.log").start()
    reps: list[dict[str, Any]] = []
    try:
        with timed(phases, "warm_up"):
            warm_up(server, db, bench, opts)
            pg.pgbench(PGBENCH_DB, opts.clients, 3)
        for r in range(opts.reps):
            rep = {"pgbench_tpcb": limit(pg, opts),
                   "pgbench_select_only": limit(pg, opts, select_only=True)}
            rep.update(service_rep(server, db, bench, opts, f"pg{r}", pg, SERVICE_DB))
            rep["my_tickets"] = load(server, seed.ticket_requests(), opts, cycle=True,
                                     pg=pg, dbname=SERVICE_DB)
            reps.append(rep)
            _progress("postgresql", r, rep)
    finally:
        server.stop()
    result = {"settings": pg.settings(), "pgbench_scale": scale, "reps": reps,
              "median": summarize(reps), "phase_seconds": phases}
    with timed(phases, "check"):
        result["check"] = check_invariants(bench.url, bench.tenant_id)
    with timed(phases, "per_request"):
        result["per_request"] = per_request_counts(db, bench)
    db.dispose()
    return result


def limit(pg: Postgres, opts: Options, *, select_only: bool = False) -> dict[str, Any]:
    """pgbench at the service's concurrency, with the database's CPU per transaction."""
    with CpuMeter({"postgres": [pg.postmaster_pid]}, PGBENCH_DB) as cpu:
        result = pg.pgbench(PGBENCH_DB, opts.clients, opts.seconds, select_only=select_only)
    done = result["tps"] * cpu.result["wall_seconds"]
    spent = cpu.result["postgres_cpu_seconds"]
    result["postgres_ms_per_txn"] = None if spent is None else round(spent * 1000 / done, 3)
    result["backends_ms_per_txn"] = round(cpu.result["backends_cpu_seconds"] * 1000 / done, 3)
    result["other_cpu_seconds"] = round(cpu.result["machine_busy_seconds"] - (spent or 0), 3)
    result["stolen_fraction"] = cpu.result["stolen_fraction"]
    return result


def per_request_counts(db: Database, bench: seed.Bench) -> dict[str, Any]:
    """Statements and round trips of each request kind, counted in-process."""
    pending = seed.create_pending(db, [seed.buyer_token(i) for i in range(40)])
    return {"notification": capture.per_request(bench.url, seed.notify_requests(pending, "n")),
            "create_order": capture.per_request(bench.url, seed.order_requests()[:40]),
            "my_tickets": capture.per_request(bench.url, seed.ticket_requests()[:40])}


def _copy(src: Path, dst: Path) -> Path:
    capture.sqlite_backup(src, dst)
    return dst


def sqlite_limit_sequences(template: Path, work: Path, count: int) -> tuple[Path, list[Any]]:
    """Pending orders in a copy of the template, and the statements each notification ran.

    The capture runs on one copy and the replays on fresh copies of the same state, so
    every replayed statement meets the rows (and row ids) it met when captured.
    """
    base = _copy(template, work / "loop-base.db")
    db = Database(f"sqlite:///{base}", pool_size=1)
    tokens = [seed.buyer_token(i % seed.BUYERS) for i in range(count)]
    pending = seed.create_pending(db, tokens)
    db.dispose()
    captured = _copy(base, work / "loop-capture.db")
    db = Database(f"sqlite:///{captured}", pool_size=1)
    calls = [functools.partial(seed.pay, db, oid, amount, f"LOOP-{oid}") for oid, amount in pending]
    sequences = capture.capture_sequences(db, calls)
    db.dispose()
    return base, sequences


def sqlite(opts: Options, work: Path, loop_orders: int) -> dict[str, Any]:
    """The service on a SQLite file, and the same statements in a plain loop, per repetition."""
    phases: dict[str, float] = {}
    template = work / "template.db"
    with timed(phases, "prepare"):
        bench = seed.prepare(f"sqlite:///{template}")
    with timed(phases, "capture"):
        base, sequences = sqlite_limit_sequences(template, work, loop_orders)
    live = _copy(template, work / "live.db")
    bench = seed.Bench(f"sqlite:///{live}", bench.tenant_id)
    db = bench.database()
    server = Server(bench.url, opts.workers, log_dir() / "server-sqlite.log").start()
    reps: list[dict[str, Any]] = []
    try:
        with timed(phases, "warm_up"):
            warm_up(server, db, bench, opts)
        for r in range(opts.reps):
            rep = service_rep(server, db, bench, opts, f"sqlite{r}")
            rep["plain_loop"] = capture.replay(_copy(base, work / f"loop-{r}.db"), sequences)
            reps.append(rep)
            _progress("sqlite", r, rep)
    finally:
        server.stop()
    result = {"reps": reps, "median": summarize(reps), "phase_seconds": phases,
              "check": check_invariants(bench.url, bench.tenant_id),
              "per_request": {"notification": capture.per_request(
                  bench.url, seed.notify_requests(seed.create_pending(
                      db, [seed.buyer_token(i) for i in range(40)]), "count"))}}
    db.dispose()
    return result


METRICS = ("per_second", "p50_ms", "p99_ms")


def summarize(reps: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over repetitions of every measured kind."""
    out: dict[str, Any] = {}
    for kind in reps[0]:
        rows = [rep[kind] for rep in reps]
        if "tps" in rows[0]:
            out[kind] = {m: median([r.get(m) for r in rows])
                         for m in ("tps", "postgres_ms_per_txn", "backends_ms_per_txn")}
            continue
        out[kind] = {m: median([r.get(m) for r in rows]) for m in METRICS}
        if "cpu" in rows[0]:
            for m in ("server_ms_per_request", "postgres_ms_per_request",
                      "backends_ms_per_request", "client_ms_per_request", "other_cpu_seconds"):
                out[kind][m] = median([r["cpu"].get(m) for r in rows])
        if "cpu_ms_per_request" in rows[0]:
            out[kind]["cpu_ms_per_request"] = median([r["cpu_ms_per_request"] for r in rows])
    return out


def _progress(suite: str, r: int, rep: dict[str, Any]) -> None:
    parts = []
    for kind, row in rep.items():
        rate = row.get("tps", row.get("per_second"))
        stolen = row.get("stolen_fraction", row.get("cpu", {}).get("stolen_fraction"))
        parts.append(f"{kind} {rate:.1f}/s" + (f" (stolen {stolen:.0%})" if stolen else ""))
    print(f"[{suite} rep {r + 1}] " + ", ".join(parts), flush=True)
