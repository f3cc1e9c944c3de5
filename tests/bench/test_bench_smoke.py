"""The benchmark harness still works: load generator, statement capture, plain-loop replay.

Seconds, not minutes: it guards `make bench` against rot, it measures nothing.
"""

from __future__ import annotations

from pathlib import Path

from bench import capture, loadgen, seed
from bench.measure import check_invariants, own_counts
from bench.server import Server
from bench.suites import sqlite_limit_sequences


def test_load_generator_against_a_live_server_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bench.db'}"
    bench = seed.prepare(url, readers=False)
    db = bench.database()
    server = Server(url, 1, tmp_path / "server.log").start()
    try:
        mark = seed.last_order_id(db)
        orders = loadgen.spawn(server.base_url, seed.rendered(seed.order_requests()),
                               connections=4, seconds=1.5, cycle_requests=True)
        pending = seed.pending_after(db, bench.tenant_id, mark)
        paid = loadgen.spawn(server.base_url, seed.rendered(seed.notify_requests(pending, "s")),
                             connections=4, seconds=1.5, expect='"processed"')
    finally:
        server.stop()
        db.dispose()
    assert orders["requests"] == len(pending) > 0
    assert orders["statuses"] == {"200": orders["requests"]} and orders["errors"] == 0
    assert paid["requests"] > 0 and paid["matched"] == paid["requests"]
    assert 0 < paid["p50_ms"] <= paid["p99_ms"] <= paid["max_ms"]
    assert check_invariants(url, bench.tenant_id)["ok"]


def test_capture_and_plain_loop_replay_do_what_the_service_did(tmp_path: Path) -> None:
    template = tmp_path / "template.db"
    bench = seed.prepare(f"sqlite:///{template}", readers=False)
    base, sequences = sqlite_limit_sequences(template, tmp_path, 12)
    assert len(sequences) == 12
    assert sequences[0][0].sql == "BEGIN IMMEDIATE" and sequences[0][-1].sql == "COMMIT"
    loop_db = tmp_path / "loop.db"
    capture.sqlite_backup(base, loop_db)
    result = capture.replay(loop_db, sequences)
    counts = own_counts(f"sqlite:///{loop_db}", bench.tenant_id)
    assert result["requests"] == 12 and result["per_second"] > 0
    assert counts["paid_orders"] == counts["processed"] == 12 and counts["ok"], counts


def test_round_trips_counted_on_postgresql(pg_url: str) -> None:
    bench = seed.prepare(pg_url, readers=False)
    db = bench.database()
    pending = seed.create_pending(db, [seed.buyer_token(i) for i in range(8)])
    db.dispose()
    counted = capture.per_request(pg_url, seed.notify_requests(pending, "rt"), warmup=2)
    assert counted["requests"] == 6 and counted["commits_per_request"] == 1
    # counted on the wire, not from SQLAlchemy's events: a pipeline sends several
    # statements in one, BEGIN (which no event sees) with the first and COMMIT with the
    # last; one alone goes as a batch of one: two exchanges (and, once, a lookup the
    # process then remembers)
    assert 2 <= counted["round_trips_per_request"] < 3 < counted["statements_per_request"]
    assert counted["hot_row_statements_before_commit"] >= 1
