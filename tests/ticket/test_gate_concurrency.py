"""Many gates scanning one ticket at once, against a real two-worker server on PostgreSQL."""

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import httpx
from sqlalchemy import func, select

from tests.factories import CUSTOMER, OPERATOR, txn_id
from ticketing.db import Database
from ticketing.models import Redemption, Ticket

N = 20


def _paid_ticket(base_url: str, product_id: int) -> str:
    with httpx.Client(base_url=base_url, timeout=30) as c:
        order = c.post("/orders", headers=CUSTOMER,
                       json={"items": [{"product_id": product_id, "quantity": 1}]}).json()
        r = c.post("/payments/notify", json={"order_id": order["order_id"], "gateway_txn_id": txn_id(),
                                             "status": "SUCCESS", "amount": order["total_amount"]})
        assert r.status_code == 200, r.text
        return r.json()["tickets_issued"][0]["ticket_code"]


def _all_at_once(base_url: str, send) -> list[httpx.Response]:
    barrier = Barrier(N)

    def run(i: int) -> httpx.Response:
        with httpx.Client(base_url=base_url, timeout=60) as c:
            barrier.wait()
            return send(c, i)

    with ThreadPoolExecutor(N) as pool:
        return list(pool.map(run, range(N)))


def _counts(url: str, code: str) -> tuple[int, int, int, str]:
    """(accepted scans, refused scans, uses left, ticket status) read from the database."""
    database = Database(url, pool_size=1)
    try:
        with database.transaction(readonly=True) as s:
            ticket = s.execute(select(Ticket).where(Ticket.ticket_code == code)).scalar_one()
            accepted, refused = (s.execute(select(func.count()).select_from(Redemption).where(
                Redemption.ticket_id == ticket.id, Redemption.accepted == flag)).scalar_one()
                for flag in (True, False))
            left = sum(e["uses_left"] for e in ticket.entitlements)
            assert left == ticket.uses_left
            return accepted, refused, left, ticket.status
    finally:
        database.dispose()


def test_twenty_staff_scan_a_one_use_ticket_and_exactly_one_gets_in(pg_url, live_server_factory):
    server = live_server_factory(pg_url, workers=2)
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        tokens = [c.post("/admin/tenants/default/users", headers=OPERATOR,
                         json={"name": f"Gate {i}", "role": "staff"}).json()["token"]
                  for i in range(N)]
    code = _paid_ticket(server.base_url, 102)  # one entitlement, one use

    def scan(c: httpx.Client, i: int) -> httpx.Response:
        return c.post(f"/tickets/{code}/redeem", headers={"Authorization": f"Bearer {tokens[i]}"},
                      json={"entitlement": "airport", "location": f"Gate {i}"})

    responses = _all_at_once(server.base_url, scan)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * (N - 1), [r.text for r in responses]
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"entitlement_used_up"}
    assert _counts(pg_url, code) == (1, N - 1, 0, "REDEEMED")
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        listed = c.get("/admin/tenants/default/redemptions", headers=OPERATOR).json()["redemptions"]
    assert sorted(s["accepted"] for s in listed) == [False] * (N - 1) + [True]
    assert len({s["staff"]["user_id"] for s in listed}) == N


def test_one_scan_retried_twenty_times_at_once_is_used_once(pg_url, live_server_factory):
    server = live_server_factory(pg_url, workers=2)
    code = _paid_ticket(server.base_url, 101)

    def scan(c: httpx.Client, _: int) -> httpx.Response:
        return c.post(f"/tickets/{code}/redeem", headers={"Authorization": "Bearer staff123"},
                      json={"entitlement": "metro", "location": "Gate 3", "nonce": "scan-42"})

    responses = _all_at_once(server.base_url, scan)
    assert [r.status_code for r in responses] == [200] * N, [r.text for r in responses]
    assert sum(1 for r in responses if not r.json()["replayed"]) == 1
    assert len({r.json()["redemption"]["id"] for r in responses}) == 1
    assert _counts(pg_url, code) == (1, 0, 2, "ACTIVE")


def test_the_signing_key_is_made_once_when_many_ask_first(pg_url, live_server_factory):
    server = live_server_factory(pg_url, workers=2)
    responses = _all_at_once(server.base_url, lambda c, _: c.get("/tenants/default/ticket-key"))
    assert {r.status_code for r in responses} == {200}
    assert len({r.json()["public_key"] for r in responses}) == 1
