"""Storms on PostgreSQL against real multi-process servers: everything applied exactly once."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from tests.audit.books import violations
from tests.factories import CUSTOMER, OPERATOR
from tests.payment.test_concurrency import (
    test_identical_notifications_at_once_on_postgresql as identical_storm,
)
from tests.stress import scenarios
from tests.stress.gateway import Gateway, run


def test_200_identical_success_notifications_at_once(pg_url, pg_db, live_server_factory):
    """The payment tests' barrier storm at 200; then what is stored, and the checker."""
    identical_storm(pg_url, live_server_factory, 200)
    assert scenarios.stored_outcomes(pg_db, ["default"]) == {"processed": 1, "replayed": 199}
    assert violations(pg_db) == []


@pytest.mark.parametrize("orders", [pytest.param(300, id="300-orders"),
                                    pytest.param(5000, id="5000-orders", marks=pytest.mark.stress)])
def test_mixed_storm_on_two_servers(pg_url, pg_db, live_server_factory, orders):
    """Duplicates, conflicts, failures then successes, late payments and refunds, all at once."""
    # Orders for late payments are placed on the server with a short TTL; both run expiry.
    short = live_server_factory(pg_url, workers=2, TICKETING_ORDER_TTL_SECONDS="2",
                                TICKETING_EXPIRY_INTERVAL_SECONDS="0.3")
    long = live_server_factory(pg_url, workers=2, TICKETING_ORDER_TTL_SECONDS="3600",
                               TICKETING_EXPIRY_INTERVAL_SECONDS="0.3")
    tenants = ["storm-a", "storm-b"]
    headers = scenarios.setup_tenants(long.base_url, tenants)
    scripts = scenarios.make_scripts(random.Random(orders), orders, tenants)

    async def storm():
        async with Gateway([short.base_url], concurrency=16) as on_short, \
                Gateway([long.base_url], concurrency=32) as on_long, \
                Gateway([short.base_url, long.base_url], concurrency=48) as both:
            await asyncio.gather(*(scenarios.create_order(
                on_short if s.kind in scenarios.SHORT_TTL_KINDS else on_long, s, headers[s.tenant])
                for s in scripts))
            await asyncio.gather(*(scenarios.play(both, s) for s in scripts))

    run(storm())
    sent = scenarios.sent_notifications(scripts)
    assert sent >= 5 * orders  # the run is as big as it claims
    stored = scenarios.stored_outcomes(pg_db, tenants)
    assert sum(stored.values()) == sent
    assert stored == scenarios.expected_outcomes(scripts)
    scenarios.check_answers(pg_db, scripts, exact=True)
    scenarios.check_final_state(pg_db, scripts, tenants)
    assert violations(pg_db) == []


def test_orders_naming_products_in_opposite_orders_never_deadlock(pg_url, pg_db, live_server_factory):
    """Placing, paying and refunding orders that list the same products in opposite orders."""
    server = live_server_factory(pg_url, workers=2)
    baskets = [[(101, 1), (102, 1)], [(102, 1), (101, 1)]] * 60

    async def storm():
        async with Gateway([server.base_url], concurrency=40) as gw:
            placed = await asyncio.gather(*(gw.deliver(
                "POST", "/orders", headers=CUSTOMER, retry=False,
                json={"items": [{"product_id": p, "quantity": q} for p, q in basket]})
                for basket in baskets))
            assert Counter(d.status for d in placed) == {200: len(baskets)}, placed[0].body
            orders = [d.body for d in placed]
            paid = await asyncio.gather(*(gw.notify({
                "order_id": o["order_id"], "gateway_txn_id": f"OPP-{o['order_id']}",
                "status": "SUCCESS", "amount": o["total_amount"]}, retry=False) for o in orders))
            assert Counter(d.status for d in paid) == {200: len(baskets)}
            refunded = await asyncio.gather(*(gw.deliver(
                "POST", f"/admin/tenants/default/orders/{o['order_id']}/refund", headers=OPERATOR,
                retry=False) for o in orders[::2]))
            assert Counter(d.status for d in refunded) == {200: len(baskets) // 2}

    run(storm())
    assert violations(pg_db) == []
