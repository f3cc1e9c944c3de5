"""The expiry job in several instances at once, racing payments: each order closed once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from sqlalchemy import func, select

from tests.audit.books import violations
from tests.factories import CUSTOMER
from tests.stress.gateway import Gateway, run
from ticketing.db import Database
from ticketing.models import Order, OrderEvent, Product

TTL = 1


@pytest.mark.parametrize("orders", [pytest.param(200, id="200-orders"),
                                    pytest.param(2000, id="2000-orders", marks=pytest.mark.stress)])
def test_two_instances_expire_each_order_once(pg_url, live_server_factory, orders):
    env = {"TICKETING_EXPIRY_INTERVAL_SECONDS": "0.05", "TICKETING_ORDER_TTL_SECONDS": str(TTL)}
    servers = [live_server_factory(pg_url, workers=2, **env) for _ in range(2)]

    async def place_and_pay():
        async with Gateway([s.base_url for s in servers], concurrency=32) as gw:
            placed = await asyncio.gather(*(gw.deliver(
                "POST", "/orders", headers={**CUSTOMER, "Idempotency-Key": f"exp-{i}"},
                json={"items": [{"product_id": 101 + i % 2, "quantity": 1 + i % 3}]})
                for i in range(orders)))
            assert {d.status for d in placed} == {200}
            await asyncio.sleep(TTL * 0.9)  # pay every third order right about when it expires
            paid = await asyncio.gather(*(gw.notify({
                "order_id": d.body["order_id"], "gateway_txn_id": f"EXP-{d.body['order_id']}",
                "status": "SUCCESS", "amount": d.body["total_amount"]})
                for d in placed[::3]))
            assert {d.body["status"] for d in paid} == {"processed"}
            return [d.body for d in placed], {d.body["order_id"] for d in paid}

    placed, paid = run(place_and_pay())
    db = Database(pg_url, pool_size=2)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with db.transaction(readonly=True) as session:
            if not session.scalar(select(func.count()).where(Order.status == "PENDING")):
                break
        time.sleep(0.2)
    with db.transaction(readonly=True) as session:
        status = dict(session.execute(select(Order.id, Order.status)).all())
        closes = Counter(oid for (oid,) in session.execute(
            select(OrderEvent.order_id).where(OrderEvent.to_state == 5, OrderEvent.accepted)))
        refused = session.execute(select(OrderEvent.order_id, OrderEvent.reason)
                                  .where(OrderEvent.accepted.is_(False))).all()
        stock = session.execute(select(Product.product_id, Product.reserved, Product.sold)
                                .order_by(Product.product_id)).all()
    assert {oid: s for oid, s in status.items()} == {
        o["order_id"]: "PAID" if o["order_id"] in paid else "CLOSED" for o in placed}
    unpaid = [o["order_id"] for o in placed if o["order_id"] not in paid]
    assert all(closes[oid] == 1 for oid in unpaid), "an order closed twice, or never"
    assert all(closes[oid] <= 1 for oid in paid)  # closed then revived by its late payment
    assert refused == []
    units = Counter()
    for o in placed:
        if o["order_id"] in paid:
            units[o["items"][0]["product_id"]] += o["items"][0]["quantity"]
    assert [tuple(row) for row in stock] == [(101, 0, units[101]), (102, 0, units[102])]
    assert violations(db) == []
    db.dispose()
