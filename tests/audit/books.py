"""A tenant's books with one order in every state, and raw-SQL access to corrupt them."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from typing import Any

import psycopg
from sqlalchemy import update
from sqlalchemy.engine import make_url

from tests.conftest import _conninfo
from tests.factories import OPERATOR, notify, place_order, txn_id
from ticketing.audit.checker import Violation, check_database
from ticketing.db import Database
from ticketing.kit.clock import utcnow
from ticketing.models import Order
from ticketing.order.service import expire_due


def refund(client: Any, order_id: int, tenant: str = "default") -> Any:
    """POST the operator refund of an order; returns the raw response."""
    return client.post(f"/admin/tenants/{tenant}/orders/{order_id}/refund", headers=OPERATOR)


def expire_now(db: Database, *order_ids: int) -> int:
    """Make the given orders due and run the expiry job's unit of work once."""
    with db.transaction() as session:
        session.execute(update(Order).where(Order.id.in_(order_ids))
                        .values(expires_at=utcnow() - timedelta(seconds=1)))
    with db.transaction() as session:
        return expire_due(session, utcnow())


def build_books(client: Any, db: Database) -> dict[str, int]:
    """Orders in every state the service can reach; returns their ids by name."""
    closed = place_order(client, items=[(102, 2)])["order_id"]
    assert expire_now(db, closed) == 1
    pending = place_order(client, items=[(101, 1), (102, 3)])
    paid = place_order(client, items=[(101, 2), (102, 1)])
    assert notify(client, order=paid, txn=txn_id()).json()["status"] == "processed"
    failed = place_order(client, items=[(102, 1)])
    assert notify(client, order=failed, txn=txn_id(), status="FAILED").json()["status"] == "failed"
    refunded = place_order(client, items=[(101, 1)])
    assert notify(client, order=refunded, txn=txn_id()).status_code == 200
    assert refund(client, refunded["order_id"]).status_code == 200
    double = place_order(client, items=[(102, 1)])
    for _ in range(2):
        assert notify(client, order=double, txn=txn_id()).status_code == 200
    return {"closed": closed, "pending": pending["order_id"], "paid": paid["order_id"],
            "failed": failed["order_id"], "refunded": refunded["order_id"],
            "double": double["order_id"]}


def run_sql(url: str, *statements: str) -> None:
    """Run statements on a connection of its own, past the service (CHECKs off on SQLite)."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(make_url(url).database, isolation_level=None)
        try:
            conn.execute("PRAGMA ignore_check_constraints = ON")
            conn.execute("PRAGMA foreign_keys = OFF")
            for sql in statements:
                conn.execute(sql)
        finally:
            conn.close()
        return
    with psycopg.connect(_conninfo(url), autocommit=True) as conn:
        for sql in statements:
            conn.execute(sql)


def violations(db: Database) -> list[Violation]:
    return check_database(db)
