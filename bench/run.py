"""`make bench`: the service's throughput as a ratio of what its database can do.

    python -m bench.run [--seconds 10] [--reps 3] [--clients 16] [--workers 2]
    python -m bench.run --history      # cost against 1,000,000 orders of history
    python -m bench.run --profile      # py-spy profile, worker sweep, round trips

Limits: pgbench's TPC-B (and select-only for reads) on the same PostgreSQL, and for
SQLite a plain `sqlite3` loop of the statements the service itself runs. Results go
to bench/results/<timestamp>.json and bench/results/latest.json (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.measure import Options
from bench.server import ROOT

RESULTS = ROOT / "bench" / "results"
# Targets of issue 5, each as (what, limit, service figure, how it compares, target).
TARGETS = {
    "notifications_vs_pgbench_tpcb": 0.5,
    "orders_vs_pgbench_tpcb": 0.5,
    "sqlite_notifications_vs_plain_loop": 0.5,
}
P99_TARGET_MS = 50.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10, help="length of each measured run")
    p.add_argument("--reps", type=int, default=3, help="repetitions (medians are reported)")
    p.add_argument("--clients", type=int, default=16,
                   help="connections of the load generator, and pgbench's -c")
    # Two cores: the work per request is CPU-bound Python holding the GIL, so one process
    # per core lets Python use both; a worker's thread pool already overlaps its database
    # waits. More processes only add context switches, memory and connections
    # (`--profile` measures 1-4 to show it).
    p.add_argument("--workers", type=int, default=2, help="`ticketing serve --workers`")
    p.add_argument("--scale", type=int, default=0,
                   help="pgbench scale (default: clients, as pgbench advises)")
    p.add_argument("--loop-orders", type=int, default=2000,
                   help="notifications replayed by the plain sqlite3 loop per repetition")
    p.add_argument("--suites", default="postgresql,sqlite",
                   help="comma-separated: postgresql, sqlite")
    p.add_argument("--history", action="store_true",
                   help="notification cost with 1,000,000 orders of history vs 1,000")
    p.add_argument("--history-orders", type=int, default=1_000_000)
    p.add_argument("--profile", action="store_true",
                   help="py-spy profile of the notification path, and a worker sweep")
    return p.parse_args(argv)


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """Each service figure over its limit: medians of per-repetition ratios."""
    out: dict[str, Any] = {}
    pg = results.get("postgresql")
    if pg:
        out["notifications_vs_pgbench_tpcb"] = _ratio(pg["reps"], "notifications", "pgbench_tpcb")
        out["orders_vs_pgbench_tpcb"] = _ratio(pg["reps"], "orders", "pgbench_tpcb")
        out["my_tickets_vs_pgbench_select_only"] = _ratio(pg["reps"], "my_tickets",
                                                          "pgbench_select_only")
        p99 = pg["median"]["notifications"]["p99_ms"]
        out["notifications_p99_ms"] = {"value": p99, "target": P99_TARGET_MS,
                                       "met": p99 is not None and p99 <= P99_TARGET_MS}
    lite = results.get("sqlite")
    if lite:
        out["sqlite_notifications_vs_plain_loop"] = _ratio(lite["reps"], "notifications",
                                                           "plain_loop")
    for name, target in TARGETS.items():
        if name in out:
            out[name].update(target=target, met=out[name]["value"] >= target)
    return out


def _ratio(reps: list[dict[str, Any]], service: str, limit: str) -> dict[str, Any]:
    from bench.measure import median

    per_rep = [rep[service]["per_second"] / _rate(rep[limit]) for rep in reps]
    return {"value": round(median(per_rep) or 0.0, 4), "per_rep": [round(v, 4) for v in per_rep]}


def _rate(row: dict[str, Any]) -> float:
    return row.get("tps") or row["per_second"]


def environment() -> dict[str, Any]:
    """What a reader needs to judge the numbers: machine, load, versions, commit."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=ROOT).stdout.strip()
    return {"cpus": os.cpu_count(), "load_average": os.getloadavg(),
            "python": platform.python_version(), "platform": platform.platform(),
            "git_commit": commit}


def write(results: dict[str, Any], mode: str) -> Path:
    """bench/results/<timestamp>.json, and latest.json (latest-<mode>.json for modes)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    path = RESULTS / f"{stamp}{'' if mode == 'default' else '-' + mode}.json"
    text = json.dumps(results, indent=2, default=str)
    path.write_text(text)
    (RESULTS / "latest.json").write_text(text)
    if mode != "default":
        (RESULTS / f"latest-{mode}.json").write_text(text)
    return path


def report(results: dict[str, Any]) -> None:
    """The headline figures, each beside its limit."""
    pg, lite = results.get("postgresql"), results.get("sqlite")
    if pg:
        m = pg["median"]
        print("\nPostgreSQL (medians over %d repetitions)" % len(pg["reps"]))
        print(f"  pgbench TPC-B              {m['pgbench_tpcb']['tps']:>9.1f} tps")
        print(f"  pgbench select-only        {m['pgbench_select_only']['tps']:>9.1f} tps")
        for kind in ("notifications", "orders", "my_tickets"):
            row = m[kind]
            print(f"  {kind:<26} {row['per_second']:>9.1f} /s   p50 {row['p50_ms']} ms"
                  f"   p99 {row['p99_ms']} ms   server CPU {row['server_ms_per_request']} ms/req"
                  f"   postgres CPU {row['postgres_ms_per_request']} ms/req")
    if lite:
        m = lite["median"]
        print("\nSQLite (medians over %d repetitions)" % len(lite["reps"]))
        print(f"  plain sqlite3 loop         {m['plain_loop']['per_second']:>9.1f} /s")
        for kind in ("notifications", "orders"):
            row = m[kind]
            print(f"  {kind:<26} {row['per_second']:>9.1f} /s   p50 {row['p50_ms']} ms"
                  f"   p99 {row['p99_ms']} ms")
    for suite in ("postgresql", "sqlite"):
        for kind, c in (results.get(suite) or {}).get("per_request", {}).items():
            print(f"  {suite} {kind}: {c['statements_per_request']} statements, "
                  f"{c['round_trips_per_request'] or '-'} round trips, "
                  f"{c['in_process_ms_median']} ms alone; hot product row held for "
                  f"{c['hot_row_statements_before_commit'] or '-'} statements, "
                  f"{c['hot_row_hold_ms_median'] or '-'} ms")
    print("\nRatios to the limit (target)")
    for name, r in results.get("ratios", {}).items():
        target = r.get("target")
        mark = "" if target is None else ("  met" if r["met"] else "  NOT met")
        print(f"  {name:<38} {r['value']:>8}" + (f"  (target {target}){mark}" if target else ""))
    for suite in ("postgresql", "sqlite"):
        if suite in results:
            ok = results[suite]["check"]["ok"]
            print(f"  invariants after {suite}: {'ok' if ok else 'FAILED'}")


def report_history(h: dict[str, Any]) -> None:
    """Notification throughput with a million orders of history against a thousand."""
    for label in ("small", "big"):
        m = h[label]["median"]["notifications"]
        print(f"  {h[label]['history_orders']:>9} orders of history ({h[label]['database_size']}): "
              f"{m['per_second']} notifications/s, p99 {m['p99_ms']} ms, invariants "
              f"{'ok' if h[label]['check']['ok'] else 'FAILED'}")
    r = h["notifications_big_vs_small"]
    print(f"  big / small: {r['value']} (per repetition {r['per_rep']}; target {r['target']}"
          f"{', met' if r['met'] else ', NOT met'})")


def report_profile(p: dict[str, Any]) -> None:
    """Python CPU per request and the layers it goes to; the worker sweep."""
    for kind in ("notifications", "orders", "my_tickets"):
        prof = p[kind]["profile"]
        print(f"  {kind}: {p[kind]['load']['per_second']}/s, Python CPU "
              f"{prof['python_cpu_ms_per_request']} ms/request")
        for layer, pct in list(prof["layers_percent"].items())[:6]:
            print(f"      {pct:>5}%  {layer}")
        for st in (p[kind]["database_statements"] or [])[:3]:
            print(f"      {st['exec_ms_per_request']:>7} ms/request in the database "
                  f"(mean {st['mean_exec_ms']} ms x {st['calls']}): {st['statement'][:60]}")
    for n, row in p["workers"].items():
        print(f"  {n} worker(s): notifications {row['notifications']['per_second']}/s "
              f"(p99 {row['notifications']['p99_ms']} ms), orders {row['orders']['per_second']}/s")


def main(argv: list[str] | None = None) -> int:
    """Run the chosen mode, write the results, print the summary."""
    args = parse_args(argv)
    from bench import suites
    from bench.pg import Postgres
    from ticketing.kit.logging import configure_logging

    configure_logging("json", "WARNING")
    opts = Options(clients=args.clients, seconds=args.seconds, reps=args.reps,
                   workers=args.workers)
    mode = "history" if args.history else "profile" if args.profile else "default"
    results: dict[str, Any] = {"mode": mode, "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                               "environment": environment(), "options": vars(args)}
    pg = Postgres()
    try:
        if args.history:
            from bench import history

            results["history"] = history.run(pg, opts, args.history_orders)
        elif args.profile:
            from bench import profile

            results["profile"] = profile.run(pg, opts)
        else:
            chosen = args.suites.split(",")
            if "postgresql" in chosen:
                results["postgresql"] = suites.postgresql(pg, opts, args.scale or args.clients)
            if "sqlite" in chosen:
                with tempfile.TemporaryDirectory(prefix="bench-sqlite-") as work:
                    results["sqlite"] = suites.sqlite(opts, Path(work), args.loop_orders)
            results["ratios"] = ratios(results)
    finally:
        pg.stop()
    results["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    path = write(results, mode)
    {"default": report, "history": lambda r: report_history(r["history"]),
     "profile": lambda r: report_profile(r["profile"])}[mode](results)
    print(f"\nresults: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
