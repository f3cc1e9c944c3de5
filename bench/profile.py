"""`--profile`: where the time of a request goes, with numbers.

- statements and round trips per request, counted in-process;
- py-spy on every worker process under load, sampling only the thread that holds
  the GIL, i.e. where the Python CPU goes (a wait on the database holds no GIL);
  samples are grouped by layer (leaf-most known package) and by named activity;
- the notification load with 1 to 4 workers.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench import seed
from bench.measure import Options, load, log_dir
from bench.pg import Postgres
from bench.server import Server
from bench.suites import per_request_counts, service_rep, warm_up

DBNAME = "bench_profile"
RATE = 200
# Leaf-first: a sample belongs to the first of its frames (from the leaf up) that matches.
LAYERS = [
    ("database driver (psycopg)", ("psycopg/",)),
    ("SQLAlchemy ORM", ("sqlalchemy/orm/",)),
    ("SQLAlchemy Core (build, cache key, compile, execute, rows)", ("sqlalchemy/",)),
    ("pydantic (validation, serialization)", ("pydantic/", "pydantic_core")),
    ("FastAPI / Starlette", ("fastapi/", "starlette/")),
    ("uvicorn, httptools, event loop", ("uvicorn/", "asyncio/", "uvloop", "httptools", "h11/")),
    ("thread pool hand-off (anyio)", ("anyio/", "threading.py", "concurrent/")),
    ("logging (structlog)", ("structlog/", "logging/")),
    ("metrics (prometheus_client)", ("prometheus_client/",)),
    ("json", ("json/",)),
    ("service code (ticketing, and the stdlib it calls)", ("ticketing/",)),
]
# Named activities: share of samples with any frame matching (they overlap).
ACTIVITIES = {
    "inside SQLAlchemy (ORM + Core + driver)": (r"\(sqlalchemy/",),
    "statement execution (Session/Connection.execute and below)":
        (r"^execute \(sqlalchemy/(orm/session|engine/base)\.py",),
    "ORM bulk insert/update paths (insert()/update() through the Session)":
        (r"orm_execute_statement \(sqlalchemy/orm/bulk_persistence\.py",),
    "cache key generation": (r"_generate_cache_key \(sqlalchemy/",),
    "commit and connection checkout/return": (
        r"^commit \(sqlalchemy/orm/session\.py", r"_checkout \(sqlalchemy/pool/",
        r"_finalize_fairy \(sqlalchemy/pool/"),
    "tenant + token lookup (authenticate, get_tenant)": (
        r"^(authenticate|get_tenant) \(ticketing/tenant/service\.py",),
    "response validation + serialization (response_model)": (
        r"^serialize_response \(fastapi/routing\.py", r"jsonable_encoder \(fastapi/encoders",),
    "JSON rendering of responses": (r"^render \(starlette/responses\.py",),
    "request body parsing + validation": (r"request_body_to_args \(fastapi/",
                                          r"model_validate_json",),
    "structlog (bind, filtered calls)": (r"\(structlog/",),
    "prometheus metrics": (r"\(prometheus_client/",),
    "ticket code generation (secrets.choice)": (r"^new_ticket_code \(ticketing/",),
    # Where the request ran: the event-loop thread (uvicorn, middleware, routing, response
    # rendering) or a thread-pool thread (the sync endpoint: service, SQLAlchemy, driver).
    "event-loop thread": (r"^Runner\.run \(asyncio/",),
    "thread-pool threads": (r"^WorkerThread\.run \(anyio/",),
}


def _frames(line: str) -> tuple[int | None, list[str], int]:
    stack, _, count = line.rstrip().rpartition(" ")
    frames = stack.split(";")
    procs = [f for f in frames if f.startswith("process ")]  # supervisor, then its worker
    pid = int(procs[-1].split()[1].rstrip(":").split(":")[0]) if procs else None
    frames = [f for f in frames if not f.startswith("process ") and "(" in f]
    return pid, frames, int(count)


def _layer(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, needles in LAYERS:
            if any(n in frame for n in needles):
                return name
    return "other"


def summarize(raw: Path, seconds: float, requests: int) -> dict[str, Any]:
    """Layers, activities and hottest functions of a py-spy raw (collapsed) profile."""
    layers: Counter[str] = Counter()
    activities: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    per_pid: Counter[int] = Counter()
    total = 0
    patterns = {k: [re.compile(p) for p in v] for k, v in ACTIVITIES.items()}
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        pid, frames, n = _frames(line)
        if not frames:
            continue
        total += n
        per_pid[pid or 0] += n
        layers[_layer(frames)] += n
        leaves[frames[-1]] += n
        for name, pats in patterns.items():
            if any(p.search(f) for f in frames for p in pats):
                activities[name] += n
        for f in {f for f in frames if "ticketing/" in f}:
            ours[f] += n
    pct = lambda c: {k: round(100 * v / max(total, 1), 1) for k, v in c.most_common()}  # noqa: E731
    return {
        "samples": total, "rate_hz": RATE, "seconds": seconds, "requests": requests,
        "python_cpu_ms_per_request": round(total / RATE * 1000 / max(requests, 1), 3),
        "gil_busy_fraction_per_process": {str(p): round(v / (RATE * seconds), 3)
                                          for p, v in per_pid.items()},
        "layers_percent": pct(layers), "activities_percent": pct(activities),
        "top_leaf_functions_percent": dict(list(pct(leaves).items())[:20]),
        "top_service_functions_inclusive_percent": dict(list(pct(ours).items())[:20]),
    }


def spy(server: Server, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """py-spy recording every worker of `server`, GIL holders only, for `seconds`."""
    tool = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return subprocess.Popen(
        [tool, "record", "--pid", str(server.pid), "--subprocesses", "--gil", "--nonblocking",
         "--rate", str(RATE), "--duration", str(int(seconds)), "--format", "raw",
         "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def profiled(server: Server, requests: list[seed.Request], opts: Options, name: str,
             *, cycle: bool, pg: Postgres, expect: str | None = None) -> dict[str, Any]:
    """One load with py-spy attached; the load's figures and the profile's summary."""
    raw = log_dir() / f"profile-{name}.txt"
    pg.statement_stats(DBNAME, reset=True)
    recorder = spy(server, opts.seconds, raw)
    result = load(server, requests, opts, cycle=cycle, pg=pg, dbname=DBNAME, expect=expect)
    _, err = recorder.communicate(timeout=opts.seconds + 60)
    if recorder.returncode != 0 or not raw.exists():
        raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')[-2000:]}")
    return {"load": result, "profile": summarize(raw, opts.seconds, result["requests"]),
            # time inside PostgreSQL per statement; an UPDATE's includes waiting for its row
            "database_statements": pg.statement_stats(DBNAME, per=result["requests"]),
            "raw_profile": str(raw)}


def run(pg: Postgres, opts: Options) -> dict[str, Any]:
    """Counts, profiles of the three request kinds, and the worker sweep."""
    pg.with_statement_stats()
    bench = seed.prepare(pg.recreate(DBNAME))
    db = bench.database()
    out: dict[str, Any] = {"per_request": per_request_counts(db, bench)}
    server = Server(bench.url, opts.workers, log_dir() / "server-profile.log").start()
    try:
        warm_up(server, db, bench, opts)
        mark = seed.last_order_id(db)
        out["orders"] = profiled(server, seed.order_requests(), opts, "orders", cycle=True, pg=pg)
        pending = seed.pending_after(db, bench.tenant_id, mark)
        out["notifications"] = profiled(server, seed.notify_requests(pending, "prof"), opts,
                                        "notifications", cycle=False, pg=pg,
                                        expect='"processed"')
        out["my_tickets"] = profiled(server, seed.ticket_requests(), opts, "my_tickets",
                                     cycle=True, pg=pg)
    finally:
        server.stop()
    out["workers"] = {}
    # 1-4 workers (each on its own SO_REUSEPORT socket), then two one-worker servers
    # with the connections split evenly by the load generator, for comparison.
    layouts = [(str(n), [n]) for n in (1, 2, 3, 4)] + [("2 servers x 1 worker, split", [1, 1])]
    for label, workers in layouts:
        servers = [Server(bench.url, n, log_dir() / f"server-workers-{label[0]}-{i}.log").start()
                   for i, n in enumerate(workers)]
        try:
            warm_up(servers, db, bench, opts)
            rep = service_rep(servers, db, bench, opts, f"w{len(out['workers'])}", pg, DBNAME)
        finally:
            for server in servers:
                server.stop()
        out["workers"][label] = {k: {m: rep[k][m] for m in ("per_second", "p50_ms", "p99_ms",
                                                           "connections_per_worker")}
                                 for k in ("orders", "notifications")}
        print(f"[workers {label}] orders {rep['orders']['per_second']}/s, notifications "
              f"{rep['notifications']['per_second']}/s, connections per worker "
              f"{rep['notifications']['connections_per_worker']}", flush=True)
    db.dispose()
    return out
