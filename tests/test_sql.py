"""kit.sql.ListLookup: one index probe per list element on PostgreSQL, whatever the
statistics say, and on SQLite at every batch size; the same rows on both databases.

The plans are checked as PostgreSQL caches them for psycopg's prepared statements
(generic plans), on a table that grew by thousands of rows since it was last
analysed: the state of a new tenant's tables during a sale opening.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.dialects import postgresql

from tests.factories import OPERATOR, notify, place_order, txn_id
from tests.sqlite_plans import Statements, explain, unkeyed_loops
from ticketing.db import Database
from ticketing.kit.sql import ListLookup, Pipeline
from ticketing.order.repository import _ITEMS_MANY, _LOCK_MANY
from ticketing.payment.repository import _RECORDED
from ticketing.ticket.repository import _ENTITLEMENTS_OF_ORDERS
from ticketing.settings import Settings
from ticketing.tenant.demo import load_demo

GROWN = 3000
_GROW = """
INSERT INTO orders (tenant_id, user_id, out_trade_no, status, payment_status, total_amount,
                    currency, needs_refund, created_at, updated_at, expires_at)
SELECT t.id, (SELECT min(id) FROM users WHERE tenant_id = t.id), 'GROWN' || g, 'PENDING', 0,
       9900, 'CNY', false, now(), now(), now() + interval '1 day'
FROM tenants t, generate_series(1, %(n)s) g WHERE t.slug = 'default';
INSERT INTO order_items (tenant_id, order_id, product_pk, product_id, product_name, quantity,
                         unit_price, amount)
SELECT o.tenant_id, o.id, p.id, p.product_id, p.name, 1, p.price, p.price
FROM orders o JOIN products p ON p.tenant_id = o.tenant_id AND p.product_id = 101;
INSERT INTO payment_transactions (tenant_id, gateway, gateway_txn_id, order_id, amount, status,
                                  outcome, applied, refunded, response, created_at)
SELECT tenant_id, 'mock', 'GROWN-' || id, id, total_amount, 'SUCCESS', 'processed', false,
       false, '{}', now() FROM orders;
"""
LOOKUPS = {"orders locked by id": (_LOCK_MANY, {"tenant_id": None, "order_ids": "ids"}),
           "items by order id": (_ITEMS_MANY, {"tenant_id": None, "order_ids": "ids"}),
           "recorded transactions": (_RECORDED, {"tenant_id": None, "gateway": "mock",
                                                 "gateway_txn_ids": "txns"})}
SQLITE_LOOKUPS = {**LOOKUPS, "entitlements of orders": (
    _ENTITLEMENTS_OF_ORDERS, {"tenant_id": None, "order_ids": "ids"})}


@pytest.fixture
def grown(pg_url: str) -> dict:
    """The demo tenant, analysed while nearly empty, then grown by GROWN orders."""
    db = Database(pg_url, pool_size=1)
    with db.transaction() as session:
        load_demo(session)
    db.dispose()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("ANALYZE")
        for statement in _GROW.split(";")[:-1]:  # autovacuum has analysed none of this
            conn.execute(statement.replace("%(n)s", str(GROWN)))
        tenant_id, = conn.execute("SELECT id FROM tenants WHERE slug = 'default'").fetchone()
        ids = [r[0] for r in conn.execute("SELECT id FROM orders ORDER BY id DESC LIMIT 8")]
    return {"url": pg_url, "tenant_id": tenant_id, "ids": sorted(ids),
            "txns": [f"GROWN-{i}" for i in ids]}


def _generic_plan(conn: psycopg.Connection, lookup: ListLookup, params: dict) -> dict:
    """EXPLAIN ANALYZE of the statement prepared as psycopg prepares it, generic plan."""
    text = str(lookup.statements["postgresql"].compile(dialect=postgresql.psycopg.dialect()))
    names: list[str] = []

    def number(match: re.Match) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    conn.execute("SET plan_cache_mode = force_generic_plan")
    numbered = re.sub(r"%\((\w+)\)s", number, text)
    conn.execute(f"PREPARE lookup AS {numbered}")
    args = sql.SQL(", ").join(sql.Literal(params[name]) for name in names)
    plan = conn.execute(sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE lookup({})").format(args))
    return json.loads(json.dumps(plan.fetchone()[0]))[0]


def _nodes(node: dict) -> list[dict]:
    return [node] + [n for child in node.get("Plans", []) for n in _nodes(child)]


@pytest.mark.postgres
@pytest.mark.parametrize("name", sorted(LOOKUPS))
def test_each_element_is_one_index_probe_on_stale_statistics(grown, name):
    lookup, shape = LOOKUPS[name]
    params = {key: grown["tenant_id"] if value is None else grown.get(value, value)
              for key, value in shape.items()}
    with psycopg.connect(grown["url"], autocommit=True) as conn:
        plan = _generic_plan(conn, lookup, params)
    nodes = _nodes(plan["Plan"])
    kinds = {n["Node Type"] for n in nodes}
    assert "Seq Scan" not in kinds and "Hash" not in kinds, kinds
    scans = [n for n in nodes if "Index Name" in n]
    assert scans and all("k.value" in n.get("Index Cond", "") for n in scans), scans
    # the table was read once per element, never a tenant's whole set of rows
    assert all(n["Actual Rows"] <= 2 for n in scans), scans
    assert plan["Plan"]["Actual Rows"] == 8  # each of the 8 orders has one item, one txn


@pytest.mark.postgres
def test_entitlements_of_orders_are_found_through_each_order_s_items(grown):
    """The entitlements a batch copies onto tickets, read with the orders' items: each
    order's items by index (the table that grows with every sale). The entitlements
    themselves are products' settings, a few rows per product: read by their index or,
    while the table is a page or two, scanned, as every other read of them is."""
    with psycopg.connect(grown["url"], autocommit=True) as conn:
        per_product = conn.execute(
            "SELECT count(*) FROM product_entitlements e JOIN products p ON p.id = e.product_pk "
            "WHERE p.product_id = 101 AND p.tenant_id = %s", (grown["tenant_id"],)).fetchone()[0]
        plan = _generic_plan(conn, _ENTITLEMENTS_OF_ORDERS, {"tenant_id": grown["tenant_id"],
                                                              "order_ids": grown["ids"]})
    nodes = _nodes(plan["Plan"])
    assert "Hash" not in {n["Node Type"] for n in nodes}
    items = [n for n in nodes if n.get("Relation Name") == "order_items"
             or "order_items" in n.get("Index Name", "")]
    assert items and any("k.value" in n.get("Index Cond", "") for n in items), nodes
    assert all(n["Node Type"] != "Seq Scan" for n in items), nodes
    assert per_product and plan["Plan"]["Actual Rows"] == 8 * per_product


@pytest.mark.parametrize("name", sorted(SQLITE_LOOKUPS))
def test_each_element_is_one_index_probe_on_sqlite_at_every_batch_size(
        sqlite_template: Path, tmp_path: Path, name: str) -> None:
    """SQLite has no statistics: from 16 ids on it looked orders up through the tenant's
    index (every order of the tenant) until `+tenant_id` ruled that index out."""
    lookup, shape = SQLITE_LOOKUPS[name]
    path = tmp_path / "lookups.db"
    shutil.copy(sqlite_template, path)
    db = Database(f"sqlite:///{path}", pool_size=1)
    recorded = Statements(db.engine)
    try:
        with db.transaction() as session:
            raw = session.connection().connection.dbapi_connection
            bad = {}
            for n in range(1, Settings.model_fields["batch_max"].default + 1):
                lists = {"ids": list(range(1, n + 1)), "txns": [f"T-{i}" for i in range(n)]}
                params = {key: 1 if value is None else lists.get(value, value)
                          for key, value in shape.items()}
                recorded.seen.clear()
                pipeline = Pipeline(session)  # the statement a batch runs for that length
                lookup.queue(pipeline, params)
                pipeline.flush()
                (sql_text, bound), = recorded.seen
                if loops := unkeyed_loops(sql_text, explain(raw, sql_text, bound)):
                    bad[n] = loops
    finally:
        db.dispose()
    assert bad == {}


def test_both_databases_find_the_same_rows(client, db):
    """Each lookup answers what the plain query would: the tenant's rows, each once, in order."""
    client.post("/admin/tenants", headers=OPERATOR, json={"slug": "acme", "name": "Acme"})
    orders = [place_order(client, items=[(101, 1), (102, 2)]) for _ in range(3)]
    txns = [txn_id() for _ in orders]
    for order, txn in zip(orders[:2], txns[:2], strict=True):
        assert notify(client, order=order, txn=txn).status_code == 200
    ids = sorted(o["order_id"] for o in orders)
    with db.transaction() as session:
        tenant_id, other = (session.connection().exec_driver_sql(
            f"SELECT id FROM tenants WHERE slug = '{slug}'").scalar_one()
            for slug in ("default", "acme"))
        locked = list(_LOCK_MANY.run(session, {"tenant_id": tenant_id,
                                               "order_ids": [ids[2], ids[0], ids[1]]}))
        assert [row.id for row in locked] == ids
        assert list(_LOCK_MANY.run(session, {"tenant_id": other, "order_ids": ids})) == []
        items = list(_ITEMS_MANY.run(session, {"tenant_id": tenant_id, "order_ids": ids}))
        assert [(row.order_id, row.product_id, row.quantity) for row in items] == [
            (order_id, product_id, qty) for order_id in ids
            for product_id, qty in ((101, 1), (102, 2))]
        recorded = _RECORDED.run(session, {"tenant_id": tenant_id, "gateway": "mock",
                                           "gateway_txn_ids": [*txns, "never-seen"]})
        assert sorted(row[0] for row in recorded) == sorted(txns[:2])
        # queued in a pipeline (SQLite: a statement of that length, on sqlite3 directly),
        # the same rows, converted the same way
        pipeline = Pipeline(session)
        queued = [lookup.queue(pipeline, params) for lookup, params in (
            (_LOCK_MANY, {"tenant_id": tenant_id, "order_ids": [ids[2], ids[0], ids[1]]}),
            (_LOCK_MANY, {"tenant_id": other, "order_ids": ids}),
            (_ITEMS_MANY, {"tenant_id": tenant_id, "order_ids": ids}),
            (_RECORDED, {"tenant_id": tenant_id, "gateway": "mock",
                         "gateway_txn_ids": [*txns, "never-seen"]}))]
        pipeline.flush()
        assert [tuple(row) for row in queued[0].rows] == [tuple(row) for row in locked]
        assert queued[1].rows == []
        assert [tuple(row) for row in queued[2].rows] == [tuple(row) for row in items]
        assert sorted(row[0] for row in queued[3].rows) == sorted(txns[:2])
