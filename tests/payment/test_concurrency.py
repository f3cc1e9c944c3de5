"""Identical notifications at once against a real multi-process server (TC-PAY-302)."""

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import httpx
import pytest

from tests.factories import CUSTOMER, OPERATOR, txn_id


def _storm(base_url: str, body: dict, n: int) -> list[httpx.Response]:
    barrier = Barrier(n)

    def send(_: int) -> httpx.Response:
        with httpx.Client(base_url=base_url, timeout=60) as c:
            barrier.wait()
            return c.post("/payments/notify", json=body)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(send, range(n)))


def _check_exactly_once(base_url: str, order: dict, responses: list[httpx.Response], units: int):
    assert [r.status_code for r in responses] == [200] * len(responses)
    bodies = [r.json() for r in responses]
    assert sum(1 for b in bodies if not b.get("replayed")) == 1
    codes = {tuple(sorted(t["ticket_code"] for t in b["tickets_issued"])) for b in bodies}
    assert len(codes) == 1 and len(next(iter(codes))) == units
    with httpx.Client(base_url=base_url, timeout=30) as c:
        detail = c.get(f"/admin/tenants/default/orders/{order['order_id']}", headers=OPERATOR).json()
        assert detail["status"] == "PAID"
        assert sorted(t["ticket_code"] for t in detail["tickets"]) == list(next(iter(codes)))
        p = c.get("/admin/tenants/default/products/101", headers=OPERATOR).json()
        assert p["stock"] == 1000 - units and p["sold"] == units and p["reserved"] == 0
        kept = c.get("/admin/tenants/default/notifications", headers=OPERATOR,
                     params={"order_id": order["order_id"], "limit": 1000}).json()["notifications"]
        outcomes = sorted(n["outcome"] for n in kept)
        assert outcomes == ["processed"] + ["replayed"] * (len(responses) - 1)


@pytest.mark.parametrize("n", [5, 50])
def test_identical_notifications_at_once_on_postgresql(pg_url, live_server_factory, n):
    server = live_server_factory(pg_url, workers=2)
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        order = c.post("/orders", headers=CUSTOMER,
                       json={"items": [{"product_id": 101, "quantity": 2}]}).json()
    body = {"order_id": order["order_id"], "gateway_txn_id": txn_id(), "status": "SUCCESS",
            "amount": order["total_amount"]}
    _check_exactly_once(server.base_url, order, _storm(server.base_url, body, n), units=2)


def test_identical_notifications_at_once_on_sqlite(tmp_path, live_server_factory):
    from ticketing.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'live.db'}"
    upgrade(url)
    server = live_server_factory(url, workers=2)
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        order = c.post("/orders", headers=CUSTOMER,
                       json={"items": [{"product_id": 101, "quantity": 1}]}).json()
    body = {"order_id": order["order_id"], "gateway_txn_id": txn_id(), "status": "SUCCESS",
            "amount": order["total_amount"]}
    _check_exactly_once(server.base_url, order, _storm(server.base_url, body, 20), units=1)


def test_many_orders_paid_concurrently_each_exactly_once(pg_url, live_server_factory):
    server = live_server_factory(pg_url, workers=2)
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        orders = [c.post("/orders", headers=CUSTOMER,
                         json={"items": [{"product_id": 102, "quantity": 1}]}).json()
                  for _ in range(20)]
    bodies = [{"order_id": o["order_id"], "gateway_txn_id": txn_id(), "status": "SUCCESS",
               "amount": o["total_amount"]} for o in orders]
    work = bodies * 3  # every notification three times, interleaved

    def send(body: dict) -> int:
        with httpx.Client(base_url=server.base_url, timeout=60) as c:
            return c.post("/payments/notify", json=body).status_code

    with ThreadPoolExecutor(16) as pool:
        assert set(pool.map(send, work)) == {200}
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        p = c.get("/admin/tenants/default/products/102", headers=OPERATOR).json()
        assert p["sold"] == 20 and p["reserved"] == 0 and p["stock"] == 980
        assert len(c.get("/my/tickets", headers=CUSTOMER).json()["tickets"]) == 20


def test_one_txn_id_racing_for_two_orders_pays_one_and_conflicts_the_other(pg_url, live_server_factory):
    server = live_server_factory(pg_url, workers=2)
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        a, b = (c.post("/orders", headers=CUSTOMER,
                       json={"items": [{"product_id": 101, "quantity": 1}]}).json() for _ in range(2))
    txn = txn_id()
    work = [{"order_id": o["order_id"], "gateway_txn_id": txn, "status": "SUCCESS",
             "amount": o["total_amount"]} for o in (a, b)] * 10
    barrier = Barrier(len(work))

    def send(body: dict) -> tuple[int, int, dict]:
        with httpx.Client(base_url=server.base_url, timeout=60) as c:
            barrier.wait()
            r = c.post("/payments/notify", json=body)
            return body["order_id"], r.status_code, r.json()

    with ThreadPoolExecutor(len(work)) as pool:
        results = list(pool.map(send, work))
    winners = {oid for oid, status, body in results if status == 200}
    assert len(winners) == 1, results
    winner = winners.pop()
    assert sorted(s for oid, s, _ in results if oid == winner) == [200] * 10
    assert sorted(s for oid, s, _ in results if oid != winner) == [409] * 10
    assert sum(1 for _, s, body in results if s == 200 and not body.get("replayed")) == 1
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        states = {o["order_id"]: c.get(f"/orders/{o['order_id']}", headers=CUSTOMER).json()["status"]
                  for o in (a, b)}
    assert sorted(states.values()) == ["PAID", "PENDING"] and states[winner] == "PAID"
