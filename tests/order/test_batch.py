"""Orders placed together (order/batch.py) hold stock exactly as orders placed alone.

Bursts of POST /orders against real servers, on both databases: every order is
answered with its own order, the stock held is the units ordered, and when the
burst asks for more units than there are, exactly the units there are are sold
out, never more (a batch short of stock hands its orders back to be placed alone).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import httpx
import pytest

from tests.audit.books import violations
from tests.factories import CUSTOMER, OPERATOR
from ticketing.db import Database


@pytest.fixture(params=["postgresql", "sqlite"])
def burst_url(request, tmp_path):
    if request.param == "sqlite":
        from ticketing.migrate import upgrade

        url = f"sqlite:///{tmp_path / 'orders.db'}"
        upgrade(url)
        return url
    return request.getfixturevalue("pg_url")


def _burst(base_url: str, bodies: list[dict]) -> list[httpx.Response]:
    barrier = Barrier(len(bodies))

    def send(body: dict) -> httpx.Response:
        with httpx.Client(base_url=base_url, timeout=60) as c:
            barrier.wait()
            return c.post("/orders", headers=CUSTOMER, json=body)

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(send, bodies))


def _books_balance(url: str) -> None:
    db = Database(url, pool_size=1)
    try:
        assert violations(db) == []
    finally:
        db.dispose()


def test_a_burst_of_orders_each_gets_its_own_order(burst_url, live_server_factory):
    server = live_server_factory(burst_url, workers=2, TICKETING_LOG_LEVEL="INFO")
    bodies = [{"items": [{"product_id": 101, "quantity": 1 + n % 3},
                         {"product_id": 102, "quantity": 1}]} for n in range(30)]
    responses = _burst(server.base_url, bodies)
    assert [r.status_code for r in responses] == [200] * 30
    orders = [r.json() for r in responses]
    assert len({o["order_id"] for o in orders}) == 30
    for body, order in zip(bodies, orders, strict=True):
        assert [(i["product_id"], i["quantity"]) for i in order["items"]] == [
            (i["product_id"], i["quantity"]) for i in body["items"]]
        assert order["total_amount"] == sum(i["amount"] for i in order["items"])
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        p101 = c.get("/admin/tenants/default/products/101", headers=OPERATOR).json()
        assert p101["reserved"] == sum(1 + n % 3 for n in range(30))
        for order in orders:
            detail = c.get(f"/orders/{order['order_id']}", headers=CUSTOMER).json()
            assert detail["items"] == order["items"] and detail["status"] == "PENDING"
    _books_balance(burst_url)
    assert _batched(server.log_path)  # the burst did go through batches


def _batched(log_path) -> bool:
    for line in log_path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "batch.applied" and entry.get("kind") == "order":
            return True
    return False


def test_a_burst_for_more_than_the_stock_sells_exactly_the_stock(burst_url, live_server_factory):
    server = live_server_factory(burst_url, workers=2)
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        made = c.post("/admin/tenants/default/products", headers=OPERATOR, json={
            "product_id": 777, "name": "Last seats", "price": 100, "stock": 7,
            "entitlements": [{"code": "ride", "name": "One ride", "uses": 1}]})
        assert made.status_code in (200, 201), made.text
    responses = _burst(server.base_url, [{"items": [{"product_id": 777, "quantity": 1}]}] * 20)
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 7 + [409] * 13
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"insufficient_stock"}
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        p = c.get("/admin/tenants/default/products/777", headers=OPERATOR).json()
        assert (p["stock"], p["reserved"]) == (7, 7)
    _books_balance(burst_url)


def test_an_order_alone_takes_three_round_trips_and_answers_as_before(client, db, db_url):
    """Alone, the common case is placed as a batch of one: on PostgreSQL BEGIN (with its
    SET LOCAL of plan_once), the caller and the products in one exchange, the order, its
    items and stock with the COMMIT. What that path cannot place is answered by the full
    path, errors as before (a product short of units among them: its compare-and-set is
    checked by the database before the COMMIT that goes with it)."""
    from ticketing.order.batch import OrderRequest, place_alone
    from tests.wire import client_messages, exchanges, since_last_begin

    token = CUSTOMER["Authorization"].removeprefix("Bearer ")
    req = OrderRequest("default", token, [{"product_id": 101, "quantity": 2}], None)
    place_alone(db, 900, req)  # the process has looked its tenant up once (then remembers)
    if db_url.startswith("sqlite"):
        view = place_alone(db, 900, req)
    else:
        with client_messages(db) as sent:
            view = place_alone(db, 900, req)
        kinds = since_last_begin(sent)
        assert exchanges(kinds) == 3 and kinds.count("Query") == 0, " ".join(kinds)
        parsed = [m for m in sent if m.startswith("Parse")]
        assert '"COMMIT"' in parsed[-1]
        # its lookups planned once (kit.sql.plan_once): the SET goes right after the BEGIN
        begin = max(i for i, m in enumerate(parsed) if '"BEGIN"' in m)
        assert "SET LOCAL plan_cache_mode = force_generic_plan" in parsed[begin + 1]
    assert (view["status"], view["total_amount"], len(view["items"])) == (
        "PENDING", 2 * client.get("/admin/tenants/default/products/101",
                                  headers=OPERATOR).json()["price"], 1)
    assert client.get(f"/orders/{view['order_id']}", headers=CUSTOMER).json()["order_id"] \
        == view["order_id"]
    client.post("/admin/tenants/default/products", headers=OPERATOR, json={
        "product_id": 500, "name": "Last seat", "price": 100, "stock": 1, "entitlements": []})
    for items, headers, status, code in [
        ([{"product_id": 999, "quantity": 1}], CUSTOMER, 404, "product_not_found"),
        ([{"product_id": 500, "quantity": 2}], CUSTOMER, 409, "insufficient_stock"),
        ([{"product_id": 101, "quantity": 1}], {"Authorization": "Bearer nobody"}, 401, None),
    ]:
        answer = client.post("/orders", headers=headers, json={"items": items})
        assert answer.status_code == status, answer.text
        if code:
            assert answer.json()["code"] == code
    assert client.get("/admin/tenants/default/products/500",
                      headers=OPERATOR).json()["reserved"] == 0
    assert violations(db) == []


def test_a_batch_asking_more_units_than_are_free_writes_nothing(client, db, db_url):
    """Each order of the batch fits the stock, both together do not: the summed
    compare-and-set fails (on PostgreSQL the database checks it, before the COMMIT sent
    with it), the whole batch answers 409, and none of its orders is left behind."""
    from sqlalchemy import func, select

    from ticketing.kit.batching import Entry
    from ticketing.kit.errors import Conflict
    from ticketing.models import Order
    from ticketing.order.batch import OrderRequest, place_batch

    client.post("/admin/tenants/default/products", headers=OPERATOR, json={
        "product_id": 600, "name": "Three seats", "price": 100, "stock": 3,
        "entitlements": []})
    token = CUSTOMER["Authorization"].removeprefix("Bearer ")
    two = OrderRequest("default", token, [{"product_id": 600, "quantity": 2}], None)

    def orders() -> int:
        with db.transaction() as session:
            return session.execute(select(func.count()).select_from(Order)).scalar_one()

    before = orders()
    with pytest.raises(Conflict) as raised:
        with db.transaction() as session:
            place_batch(session, [Entry(two), Entry(two)], 900)
    assert raised.value.code == "insufficient_stock"
    assert "product 600" in raised.value.message
    assert orders() == before
    product = client.get("/admin/tenants/default/products/600", headers=OPERATOR).json()
    assert (product["stock"], product["reserved"]) == (3, 0)
    with db.transaction() as session:  # one of them alone fits, and the connection serves
        placed = place_batch(session, [Entry(two)], 900)
    assert placed[0]["status"] == "PENDING" and orders() == before + 1
    assert violations(db) == []
