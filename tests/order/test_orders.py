"""Placing and reading orders (TC-PAY-001, TC-PAY-002, TC-ORDER-101), on both databases."""

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from threading import Barrier

from tests.audit.books import violations
from tests.factories import CUSTOMER, OPERATOR, place_order, product
from ticketing.api.app import expire_once
from ticketing.order.batch import OrderRequest, place_alone
from ticketing.order.schemas import OrderOut


def test_create_pending_order(client):  # TC-PAY-001 / TC-ORDER-101
    r = client.post("/orders", headers=CUSTOMER, json={"items": [{"product_id": 101, "quantity": 1}]})
    assert r.status_code == 200
    order = r.json()
    assert order["status"] == "PENDING" and order["payment_status"] == 0
    assert isinstance(order["order_id"], int) and order["out_trade_no"]
    assert order["total_amount"] == 9900 and order["currency"] == "CNY"
    created = datetime.fromisoformat(order["created_at"])
    assert created.utcoffset() is not None
    assert datetime.fromisoformat(order["expires_at"]) - created == timedelta(seconds=900)


def test_order_lists_every_item_with_correct_amounts(client):  # TC-PAY-002
    order = place_order(client, items=[(101, 2), (102, 3)])
    assert order["items"] == [
        {"product_id": 101, "product_name": "3-in-1 Transport Pass", "quantity": 2,
         "unit_price": 9900, "amount": 19800},
        {"product_id": 102, "product_name": "Airport Express Single", "quantity": 3,
         "unit_price": 2500, "amount": 7500},
    ]
    assert order["total_amount"] == 19800 + 7500


def test_repeated_product_lines_are_merged(client):
    order = place_order(client, items=[(101, 1), (101, 2)])
    assert [(i["product_id"], i["quantity"]) for i in order["items"]] == [(101, 3)]
    assert order["total_amount"] == 3 * 9900


def test_order_holds_stock_without_deducting_it(client):
    before = product(client, 101)
    place_order(client, items=[(101, 4)])
    after = product(client, 101)
    assert after["stock"] == before["stock"]
    assert after["reserved"] == before["reserved"] + 4
    assert after["available"] == before["available"] - 4


def test_not_enough_stock_is_409_and_holds_nothing(client):
    client.post("/admin/tenants/default/products", headers=OPERATOR, json={
        "product_id": 500, "name": "Last seats", "price": 100, "stock": 2, "entitlements": []})
    place_order(client, items=[(500, 2)])
    r = client.post("/orders", headers=CUSTOMER, json={"items": [{"product_id": 500, "quantity": 1}]})
    assert r.status_code == 409 and r.json()["code"] == "insufficient_stock"
    assert product(client, 500)["reserved"] == 2


def test_partial_failure_releases_what_was_held(client):
    client.post("/admin/tenants/default/products", headers=OPERATOR, json={
        "product_id": 501, "name": "Scarce", "price": 100, "stock": 1, "entitlements": []})
    r = client.post("/orders", headers=CUSTOMER, json={"items": [
        {"product_id": 101, "quantity": 5}, {"product_id": 501, "quantity": 2}]})
    assert r.status_code == 409
    assert product(client, 101)["reserved"] == 0  # the first line's hold rolled back


def test_unknown_product_is_404(client):
    r = client.post("/orders", headers=CUSTOMER, json={"items": [{"product_id": 999, "quantity": 1}]})
    assert r.status_code == 404 and r.json()["code"] == "product_not_found"


def test_the_answer_is_exactly_the_documented_order_shape(client):
    """POST /orders sends its view as built (no response-model pass), so the view must
    be the contract's shape by itself: no field more or less, none of another type;
    placed alone, batched or replayed for an Idempotency-Key alike."""
    body = {"items": [{"product_id": 101, "quantity": 2}, {"product_id": 102, "quantity": 1}]}
    answers = [client.post("/orders", headers=CUSTOMER, json=body).json()]
    keyed = {**CUSTOMER, "Idempotency-Key": "shape-1"}
    answers += [client.post("/orders", headers=keyed, json=body).json() for _ in range(2)]
    for answer in answers:
        assert OrderOut.model_validate(answer, strict=True).model_dump() == answer
    assert answers[1] == answers[2]


def test_idempotency_key_returns_the_same_order(client):
    body = {"items": [{"product_id": 101, "quantity": 1}]}
    headers = {**CUSTOMER, "Idempotency-Key": "abc-123"}
    first = client.post("/orders", headers=headers, json=body).json()
    second = client.post("/orders", headers=headers, json=body).json()
    assert first == second
    assert product(client, 101)["reserved"] == 1
    other = client.post("/orders", headers=headers, json={"items": [{"product_id": 102, "quantity": 1}]})
    assert other.status_code == 409 and other.json()["code"] == "idempotency_key_reused"


def test_an_empty_idempotency_key_is_no_key(client):
    body = {"items": [{"product_id": 101, "quantity": 1}]}
    headers = {**CUSTOMER, "Idempotency-Key": ""}
    first = client.post("/orders", headers=headers, json=body)
    second = client.post("/orders", headers=headers, json=body)
    assert first.status_code == second.status_code == 200
    assert first.json()["order_id"] != second.json()["order_id"]
    assert product(client, 101)["reserved"] == 2


def test_owner_reads_order_with_tickets_field(client):
    order = place_order(client)
    r = client.get(f"/orders/{order['order_id']}", headers=CUSTOMER)
    assert r.status_code == 200
    body = r.json()
    assert body["tickets"] == [] and body["paid_at"] is None and body["transaction_id"] is None


def test_other_customer_and_other_tenant_get_404(client):
    order = place_order(client)
    r = client.post("/admin/tenants/default/users", headers=OPERATOR,
                    json={"name": "Someone else", "role": "customer", "token": "other-user-1"})
    assert r.status_code == 200
    other = {"Authorization": "Bearer other-user-1"}
    assert client.get(f"/orders/{order['order_id']}", headers=other).status_code == 404
    client.post("/admin/tenants", headers=OPERATOR, json={"slug": "acme", "name": "Acme"})
    r = client.get(f"/orders/{order['order_id']}", headers={**CUSTOMER, "X-Tenant-ID": "acme"})
    assert r.status_code == 401  # user123 is not a user of acme
    assert client.get("/orders/1", headers={**CUSTOMER, "X-Tenant-ID": "nosuch"}).status_code == 404


def test_staff_cannot_place_orders(client):
    r = client.post("/orders", headers={"Authorization": "Bearer staff123"},
                    json={"items": [{"product_id": 101, "quantity": 1}]})
    assert r.status_code == 403 and r.json()["code"] == "wrong_role"


def test_expiry_closes_unpaid_orders_and_releases_stock(client, db):
    order = place_order(client, items=[(101, 3)])
    assert product(client, 101)["reserved"] == 3
    assert expire_once(db) == 0  # not due yet
    with db.transaction() as session:
        from sqlalchemy import update

        from ticketing.models import Order
        session.execute(update(Order).values(expires_at=datetime(2000, 1, 1).astimezone()))
    assert expire_once(db) == 1
    closed = client.get(f"/orders/{order['order_id']}", headers=CUSTOMER).json()
    assert closed["status"] == "CLOSED" and closed["payment_status"] == 5
    assert product(client, 101)["reserved"] == 0
    assert expire_once(db) == 0  # closing is done once


def test_pay_with_mock_marks_paying_and_returns_the_notification(client):
    order = place_order(client)
    r = client.post(f"/orders/{order['order_id']}/pay", headers=CUSTOMER, json={"gateway": "mock"})
    assert r.status_code == 200, r.text
    started = r.json()
    assert started["payment_status"] == 1
    notify = started["notify"]
    assert notify["path"] == "/payments/notify"
    assert notify["body"]["amount"] == order["total_amount"]
    assert client.get(f"/orders/{order['order_id']}", headers=CUSTOMER).json()["payment_status"] == 1
    done = client.post(notify["path"], json=notify["body"], headers=notify["headers"])
    assert done.status_code == 200 and done.json()["status"] == "processed"
    again = client.post(f"/orders/{order['order_id']}/pay", headers=CUSTOMER, json={"gateway": "mock"})
    assert again.status_code == 409 and again.json()["code"] == "order_not_payable"


def test_requests_with_one_idempotency_key_at_once_get_one_order(client, db):
    """A client retrying before its first try was answered: every try, however many at
    once, is answered with the one order placed, and its stock is held once."""
    tries = 8
    for round_ in range(3):
        req = OrderRequest("default", "user123", [{"product_id": 101, "quantity": 1}],
                           f"retry-{round_}")
        barrier = Barrier(tries)

        def attempt(_: int) -> dict:
            barrier.wait()
            return place_alone(db, 900, req)

        with ThreadPoolExecutor(tries) as pool:
            views = list(pool.map(attempt, range(tries)))
        assert len({v["order_id"] for v in views}) == 1
        assert all(v == views[0] for v in views)
        assert product(client, 101)["reserved"] == round_ + 1
    assert violations(db) == []
