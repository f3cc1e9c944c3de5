"""On SQLite, orders and notifications cost the same however many came before them.

Every statement of the order and notification paths, alone and in a batch as large
as batches get, finds its rows by a key. SQLite answers a row-value IN list
(`(tenant_id, order_id) IN (...)`) by reading the whole table, and without statistics
it looks 16 or more orders up through the tenant's index rather than by primary key:
both made each batch cost as much as the tables were big, and the SQLite benchmark's
notification rate fell with every repetition on the same file. The plans come from
the statements the service really sends, with their parameters (tests/sqlite_plans.py).
"""

from __future__ import annotations

import contextvars
import json
import shutil
from pathlib import Path

from tests.sqlite_plans import Statements, explain, unkeyed_loops
from ticketing.db import Database
from ticketing.kit.batching import Entry
from ticketing.order.batch import OrderRequest, place_alone, place_batch
from ticketing.payment import flows
from ticketing.payment.batch import MockNotification, apply_batch
from ticketing.settings import Settings
from ticketing.tenant.demo import load_demo

ITEMS = [{"product_id": 101, "quantity": 2}, {"product_id": 102, "quantity": 1}]
BATCH = Settings.model_fields["batch_max"].default  # as large as batches get


def _notification(order: dict, txn: str) -> MockNotification:
    body = {"order_id": order["order_id"], "gateway_txn_id": txn, "status": "SUCCESS",
            "amount": order["total_amount"]}
    return MockNotification("default", json.dumps(body).encode(),
                            {"content-type": "application/json"})


def _drive(db: Database) -> tuple[dict, dict]:
    """An order alone, a batch of orders, a notification alone, a batch of them."""
    request = OrderRequest("default", "user123", ITEMS, None)
    orders = [place_alone(db, 900, request)]
    with db.transaction() as session:
        placed = place_batch(session, [Entry(request, context={}) for _ in range(BATCH)], 900)
    orders += placed.values()
    assert flows.notify_mock(db, "default", _notification(orders[0], "HOT-0").raw,
                             {}).outcome == "processed"
    with db.transaction() as session:
        applied = apply_batch(session, [Entry(_notification(o, f"HOT-{n}"), context={})
                                        for n, o in enumerate(orders[1:], 1)])
    return placed, applied


def test_orders_and_notifications_find_every_row_by_a_key_on_sqlite(
        sqlite_template: Path, tmp_path: Path) -> None:
    path = tmp_path / "hot.db"
    shutil.copy(sqlite_template, path)
    db = Database(f"sqlite:///{path}", pool_size=1)
    try:
        with db.transaction() as session:
            load_demo(session)
        recorded = Statements(db.engine)
        # in a context of its own: what the paths bind for their logs stays there
        placed, applied = contextvars.copy_context().run(_drive, db)
        assert len(placed) == BATCH and len(applied) == BATCH
        statements = {sql: params for sql, params in recorded.seen
                      if sql.lstrip().upper().startswith(("SELECT", "INSERT", "UPDATE"))}
        with db.engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            bad = {sql.split("\n")[0][:100]: loops for sql, params in statements.items()
                   if (loops := unkeyed_loops(sql, explain(raw, sql, params)))}
    finally:
        db.dispose()
    assert len(statements) > 10
    assert bad == {}


def test_a_row_value_in_list_is_a_scan_and_a_foreign_key_guard_is_not() -> None:
    batch_before = [(3, 0, 0, "SCAN orders"), (8, 0, 0, "LIST SUBQUERY 16"),
                    (9, 8, 0, "SCAN 16 CONSTANT ROWS")]
    assert unkeyed_loops("SELECT orders.id FROM orders", batch_before) == ["SCAN orders"]
    by_tenant = [(3, 0, 0, "SEARCH orders USING INDEX ix_orders_tenant_user (tenant_id=?)")]
    assert unkeyed_loops("SELECT orders.id FROM orders", by_tenant) == [by_tenant[0][3]]
    batch_after = [(3, 0, 0, "SEARCH orders USING INTEGER PRIMARY KEY (rowid=?)"),
                   *batch_before[1:]]
    assert unkeyed_loops("SELECT orders.id FROM orders", batch_after) == []
    insert = [(2, 0, 0, "SCAN refunds USING COVERING INDEX ix_refunds_order"),
              (3, 0, 0, "SCAN order_items")]
    assert unkeyed_loops("INSERT INTO orders (tenant_id) VALUES (?)", insert) == []
    assert unkeyed_loops("INSERT INTO users (tenant_id) VALUES (?)", insert) == [
        insert[0][3], insert[1][3]]
