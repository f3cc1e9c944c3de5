"""Any sequence of notifications, refunds, payments started and expiry ends where the rules say.

A hypothesis state machine drives the real API (in-process, both databases) and a model
of the rules (tests/stress/order_model.py) side by side; after every step the orders,
stock and tickets must match the model and the invariant checker must find nothing.
Each example is a fresh tenant with scarce stock, so late payments can find it gone.
Examples: a few dozen in `make test`, many more under `make stress`.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tests.audit.books import refund, violations
from tests.factories import OPERATOR
from tests.stress.order_model import Model, OrderModel
from ticketing.kit.clock import utcnow
from ticketing.order.service import expire_due

PRICES = {1: 700, 2: 1100}
STOCK = {1: 3, 2: 2}
_tenants = itertools.count(1)


def _tenant(client) -> tuple[str, dict[str, str]]:
    slug = f"prop-{next(_tenants)}"
    assert client.post("/admin/tenants", headers=OPERATOR,
                       json={"slug": slug, "name": slug}).status_code == 200
    for pid, price in PRICES.items():
        r = client.post(f"/admin/tenants/{slug}/products", headers=OPERATOR, json={
            "product_id": pid, "name": f"P{pid}", "price": price, "stock": STOCK[pid],
            "entitlements": [{"code": "ride", "name": "Ride", "uses": 1}]})
        assert r.status_code == 200, r.text
    token = f"tok-{slug}"
    assert client.post(f"/admin/tenants/{slug}/users", headers=OPERATOR,
                       json={"name": "c", "role": "customer", "token": token}).status_code == 200
    return slug, {"X-Tenant-ID": slug, "Authorization": f"Bearer {token}"}


class OrderMachine(RuleBasedStateMachine):
    """The API and the model, step by step."""

    client = None  # set by the test before the machine runs
    db = None

    def __init__(self) -> None:
        super().__init__()
        self.slug, self.headers = _tenant(self.client)
        self.model = Model(stock=dict(STOCK), price=dict(PRICES))
        self.txns: list[str] = []
        self.bodies: dict[str, dict] = {}

    @rule(items=st.dictionaries(st.sampled_from(sorted(PRICES)), st.integers(1, 2), min_size=1))
    def place(self, items):
        r = self.client.post("/orders", headers=self.headers, json={
            "items": [{"product_id": p, "quantity": q} for p, q in items.items()]})
        expected = self.model.place(items)
        assert r.status_code == (200 if expected else 409), r.text
        if expected:
            body = r.json()
            assert body["total_amount"] == sum(PRICES[p] * q for p, q in items.items())
            self.model.orders.append(OrderModel(body["order_id"], dict(items), body["total_amount"]))

    @precondition(lambda self: self.model.orders)
    @rule(data=st.data(), status=st.sampled_from(["SUCCESS", "FAILED"]), fresh=st.booleans(),
          right_amount=st.booleans())
    def notify(self, data, status, fresh, right_amount):
        index = data.draw(st.integers(0, len(self.model.orders) - 1), label="order")
        if fresh or not self.txns:
            txn = f"{self.slug}-T{len(self.txns)}"
            self.txns.append(txn)
        else:
            txn = data.draw(st.sampled_from(self.txns), label="txn")
        order = self.model.orders[index]
        amount = order.total if right_amount else order.total + 1
        r = self.client.post("/payments/notify", headers={"X-Tenant-ID": self.slug}, json={
            "order_id": order.id, "gateway_txn_id": txn, "status": status, "amount": amount})
        code, outcome = self.model.notify(index, txn, status, amount)
        assert r.status_code == code, (r.text, outcome)
        body = r.json()
        if outcome == "replayed":
            assert body == {**self.bodies[txn], "replayed": True}
        else:
            assert body["status"] == {"processed": "processed", "failed": "failed",
                                      "needs_refund": "needs_refund", "ignored": "ignored",
                                      "conflict": "conflict"}[outcome]
            assert "replayed" not in body
        if outcome == "processed":
            assert len(body["tickets_issued"]) == sum(order.items.values())
        if code == 200 and outcome != "replayed":
            self.bodies[txn] = body

    @precondition(lambda self: self.model.orders)
    @rule(data=st.data())
    def refund(self, data):
        index = data.draw(st.integers(0, len(self.model.orders) - 1), label="order")
        r = refund(self.client, self.model.orders[index].id, self.slug)
        assert r.status_code == self.model.refund(index), r.text

    @precondition(lambda self: self.model.orders)
    @rule(data=st.data())
    def start_payment(self, data):
        index = data.draw(st.integers(0, len(self.model.orders) - 1), label="order")
        r = self.client.post(f"/orders/{self.model.orders[index].id}/pay", headers=self.headers,
                             json={"gateway": "mock"})
        assert r.status_code == self.model.start_payment(index), r.text

    @rule()
    def expire(self):
        with self.db.transaction() as session:  # as the job would after every order's TTL
            expire_due(session, utcnow() + timedelta(days=1), limit=1000)
        self.model.expire()

    @invariant()
    def matches_the_model(self):
        for p in PRICES:
            got = self.client.get(f"/admin/tenants/{self.slug}/products/{p}", headers=OPERATOR).json()
            assert (got["stock"], got["reserved"], got["sold"]) == (
                self.model.stock[p], self.model.reserved[p], self.model.sold[p]), p
        for index, order in enumerate(self.model.orders):
            got = self.client.get(f"/admin/tenants/{self.slug}/orders/{order.id}",
                                  headers=OPERATOR).json()
            live = [t for t in got["tickets"] if t["status"] != "VOID"]
            assert (got["payment_status"], got["status"], got["needs_refund"]) == (
                int(order.state), order.status, self.model.needs_refund(index)), order
            assert len(live) == (sum(order.items.values()) if order.status == "PAID" else 0)

    def teardown(self):
        assert violations(self.db) == []


@pytest.mark.parametrize("examples", [pytest.param(25, id="default"),
                                      pytest.param(400, id="many", marks=pytest.mark.stress)])
def test_any_sequence_ends_where_the_rules_say(client, db, examples):
    OrderMachine.client, OrderMachine.db = client, db
    OrderMachine.TestCase.settings = settings(
        max_examples=examples, stateful_step_count=20, deadline=None, derandomize=False,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    OrderMachine.TestCase().runTest()
