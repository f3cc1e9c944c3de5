"""Mock-gateway notifications: the runbook's TC-PAY-003..006 and 101..204, both databases."""

import hashlib
import hmac
import json

from tests.factories import CUSTOMER, OPERATOR, notify, place_order, product, txn_id
from ticketing.api.app import expire_once


def notifications(client, **params):
    r = client.get("/admin/tenants/default/notifications", headers=OPERATOR, params=params)
    assert r.status_code == 200, r.text
    return r.json()["notifications"]


def test_success_pays_and_issues_one_ticket_per_unit(client):  # TC-PAY-003 / 101
    order = place_order(client, items=[(101, 2), (102, 1)])
    r = notify(client, order=order, txn=txn_id())
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "processed" and body["order_status"] == "PAID"
    assert body["order_id"] == order["order_id"]
    assert sorted(t["product_id"] for t in body["tickets_issued"]) == [101, 101, 102]
    assert all(t["ticket_code"].startswith("TKT-") for t in body["tickets_issued"])
    assert len({t["ticket_code"] for t in body["tickets_issued"]}) == 3
    assert "replayed" not in body


def test_tickets_visible_at_once_with_entitlements_and_order(client):  # TC-PAY-007/008/102/104
    order = place_order(client)
    issued = notify(client, order=order, txn=txn_id()).json()["tickets_issued"]
    tickets = client.get("/my/tickets", headers=CUSTOMER).json()["tickets"]
    assert [t["ticket_code"] for t in tickets] == [issued[0]["ticket_code"]]
    ticket = tickets[0]
    assert ticket["status"] == "ACTIVE" and ticket["order_id"] == order["order_id"]
    assert [(e["code"], e["uses_total"], e["uses_left"]) for e in ticket["entitlements"]] == [
        ("metro", 1, 1), ("bus", 1, 1), ("ferry", 1, 1)]
    one = client.get(f"/tickets/{ticket['ticket_code']}", headers=CUSTOMER)
    assert one.status_code == 200 and one.json()["order_id"] == order["order_id"]
    detail = client.get(f"/orders/{order['order_id']}", headers=CUSTOMER).json()
    assert detail["status"] == "PAID" and detail["payment_status"] == 2
    assert detail["paid_at"] and detail["transaction_id"]
    assert [t["ticket_code"] for t in detail["tickets"]] == [ticket["ticket_code"]]


def test_my_tickets_newest_first(client):
    first, second = place_order(client), place_order(client, items=[(102, 1)])
    notify(client, order=first, txn=txn_id())
    notify(client, order=second, txn=txn_id())
    tickets = client.get("/my/tickets", headers=CUSTOMER).json()["tickets"]
    assert [t["order_id"] for t in tickets] == [second["order_id"], first["order_id"]]


def test_stock_deducted_once(client):  # TC-PAY-103 / 202
    before = product(client, 101)
    order = place_order(client, items=[(101, 2)])
    txn = txn_id()
    notify(client, order=order, txn=txn)
    after = product(client, 101)
    assert after["stock"] == before["stock"] - 2 and after["reserved"] == 0
    assert after["sold"] == before["sold"] + 2
    for _ in range(3):
        notify(client, order=order, txn=txn)
    assert product(client, 101) == after


def test_failed_keeps_order_pending_then_a_new_payment_succeeds(client):  # TC-PAY-004 / 201
    order = place_order(client)
    r = notify(client, order=order, txn=txn_id(), status="FAILED")
    assert r.status_code == 200
    assert r.json() == {"status": "failed", "order_id": order["order_id"],
                        "order_status": "PENDING", "error": "Payment failed"}
    detail = client.get(f"/orders/{order['order_id']}", headers=CUSTOMER).json()
    assert detail["status"] == "PENDING" and detail["payment_status"] == 4 and detail["tickets"] == []
    assert product(client, 101)["reserved"] == 1
    ok = notify(client, order=order, txn=txn_id())
    assert ok.json()["status"] == "processed"


def test_duplicate_is_replayed_with_the_first_answer(client):  # TC-PAY-005 / 202
    order = place_order(client, items=[(101, 2)])
    txn = txn_id()
    first = notify(client, order=order, txn=txn).json()
    again = notify(client, order=order, txn=txn)
    assert again.status_code == 200
    assert again.json() == {**first, "replayed": True}
    detail = client.get(f"/orders/{order['order_id']}", headers=CUSTOMER).json()
    assert len(detail["tickets"]) == 2
    assert [n["outcome"] for n in notifications(client, order_id=order["order_id"])] == [
        "replayed", "processed"]


def test_duplicate_failure_is_replayed_too(client):
    order = place_order(client)
    txn = txn_id()
    first = notify(client, order=order, txn=txn, status="FAILED").json()
    assert notify(client, order=order, txn=txn, status="FAILED").json() == {**first, "replayed": True}


def test_unknown_order_is_404_and_kept(client):  # TC-PAY-006 / 203
    r = client.post("/payments/notify", json={"order_id": 999999, "gateway_txn_id": txn_id(),
                                              "status": "SUCCESS", "amount": 9900})
    assert r.status_code == 404
    assert r.json()["status"] == "error" and r.json()["error"] == "Order not found"
    assert notifications(client)[0]["outcome"] == "not_found"


def test_other_tenants_order_is_404(client):
    order = place_order(client)
    client.post("/admin/tenants", headers=OPERATOR, json={"slug": "acme", "name": "Acme"})
    r = notify(client, order=order, txn=txn_id(), headers={"X-Tenant-ID": "acme"})
    assert r.status_code == 404
    assert client.get(f"/orders/{order['order_id']}", headers=CUSTOMER).json()["status"] == "PENDING"


def test_txn_id_reused_with_other_amount_status_or_order_is_409(client):  # TC-PAY-204
    order, other = place_order(client), place_order(client)
    txn = txn_id()
    notify(client, order=order, txn=txn)
    for kwargs in ({"order": order, "status": "FAILED"}, {"order": other},
                   {"order": order, "amount": 1}):
        r = notify(client, txn=txn, **kwargs)
        assert r.status_code == 409, kwargs
        assert r.json()["status"] == "conflict" and r.json()["code"] == "notification_conflict"
    assert client.get(f"/orders/{other['order_id']}", headers=CUSTOMER).json()["status"] == "PENDING"
    assert len(notifications(client, outcome="conflict")) == 3


def test_amount_not_the_order_total_is_409_and_changes_nothing(client):
    order = place_order(client)
    r = notify(client, order=order, txn=txn_id(), amount=order["total_amount"] - 1)
    assert r.status_code == 409 and r.json()["status"] == "conflict"
    assert client.get(f"/orders/{order['order_id']}", headers=CUSTOMER).json()["payment_status"] == 0
    assert product(client, 101)["reserved"] == 1


def test_second_payment_for_paid_order_is_kept_and_flagged(client):
    order = place_order(client)
    notify(client, order=order, txn=txn_id())
    r = notify(client, order=order, txn=txn_id())
    assert r.status_code == 200
    assert r.json()["status"] == "needs_refund" and r.json()["tickets_issued"] == []
    detail = client.get(f"/admin/tenants/default/orders/{order['order_id']}", headers=OPERATOR).json()
    assert detail["needs_refund"] is True and len(detail["tickets"]) == 1
    assert product(client, 101)["sold"] == 1
    assert notifications(client)[0]["outcome"] == "needs_refund"


def test_failure_after_success_never_undoes_it(client):
    order = place_order(client)
    notify(client, order=order, txn=txn_id())
    r = notify(client, order=order, txn=txn_id(), status="FAILED")
    assert r.status_code == 200 and r.json()["status"] == "ignored"
    detail = client.get(f"/orders/{order['order_id']}", headers=CUSTOMER).json()
    assert detail["status"] == "PAID" and detail["payment_status"] == 2


def _expire_all(db):
    from datetime import datetime

    from sqlalchemy import update

    from ticketing.models import Order
    with db.transaction() as session:
        session.execute(update(Order).values(expires_at=datetime(2000, 1, 1).astimezone()))
    expire_once(db)


def test_late_payment_revives_closed_order_when_stock_remains(client, db):
    order = place_order(client, items=[(101, 2)])
    _expire_all(db)
    assert product(client, 101)["reserved"] == 0
    r = notify(client, order=order, txn=txn_id())
    assert r.json()["status"] == "processed" and len(r.json()["tickets_issued"]) == 2
    p = product(client, 101)
    assert p["stock"] == 998 and p["reserved"] == 0 and p["sold"] == 2


def test_late_payment_when_stock_is_gone_is_kept_and_flagged(client, db):
    client.post("/admin/tenants/default/products", headers=OPERATOR, json={
        "product_id": 600, "name": "Two seats", "price": 500, "stock": 2, "entitlements": []})
    order = place_order(client, items=[(101, 1), (600, 2)])
    _expire_all(db)
    rival = place_order(client, items=[(600, 2)])
    notify(client, order=rival, txn=txn_id())
    r = notify(client, order=order, txn=txn_id())
    assert r.status_code == 200 and r.json()["status"] == "needs_refund"
    detail = client.get(f"/admin/tenants/default/orders/{order['order_id']}", headers=OPERATOR).json()
    assert detail["status"] == "CLOSED" and detail["needs_refund"] is True and detail["tickets"] == []
    assert product(client, 101)["sold"] == 0  # the first item's sale rolled back with the second
    refund = client.post(f"/admin/tenants/default/orders/{order['order_id']}/refund", headers=OPERATOR)
    assert refund.status_code == 200 and refund.json()["refund"]["status"] == "SUCCESS"
    assert refund.json()["needs_refund"] is False and refund.json()["status"] == "CLOSED"


def test_operator_refund_voids_tickets_and_returns_stock(client):
    order = place_order(client, items=[(101, 2)])
    notify(client, order=order, txn=txn_id())
    r = client.post(f"/admin/tenants/default/orders/{order['order_id']}/refund", headers=OPERATOR)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "REFUNDED" and body["payment_status"] == 3
    assert {t["status"] for t in body["tickets"]} == {"VOID"}
    assert product(client, 101)["stock"] == 1000 and product(client, 101)["sold"] == 0
    again = client.post(f"/admin/tenants/default/orders/{order['order_id']}/refund", headers=OPERATOR)
    assert again.status_code == 409 and again.json()["code"] == "not_refundable"
    late = notify(client, order=order, txn=txn_id())
    assert late.json()["status"] == "needs_refund"


def test_refund_of_unpaid_order_is_409(client):
    order = place_order(client)
    r = client.post(f"/admin/tenants/default/orders/{order['order_id']}/refund", headers=OPERATOR)
    assert r.status_code == 409


def test_signed_mock_gateway(client):
    r = client.put("/admin/tenants/default/gateways/mock", headers=OPERATOR, json={"secret": "s3cret"})
    assert r.status_code == 200 and "s3cret" not in r.text
    order = place_order(client)
    body = json.dumps({"order_id": order["order_id"], "gateway_txn_id": txn_id(),
                       "status": "SUCCESS", "amount": order["total_amount"]}).encode()
    unsigned = client.post("/payments/notify", content=body, headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401
    wrong = client.post("/payments/notify", content=body, headers={"X-Mock-Signature": "00" * 32})
    assert wrong.status_code == 401
    sig = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    ok = client.post("/payments/notify", content=body, headers={"X-Mock-Signature": sig})
    assert ok.status_code == 200 and ok.json()["status"] == "processed"
    kept = notifications(client)
    assert [n["verification"] for n in kept] == ["verified", "failed", "failed"]
    assert [n["outcome"] for n in kept] == ["processed", "rejected", "rejected"]
    started = client.post(f"/orders/{place_order(client)['order_id']}/pay", headers=CUSTOMER,
                          json={"gateway": "mock"}).json()["notify"]
    replay = client.post(started["path"], content=started["raw_body"], headers=started["headers"])
    assert replay.status_code == 200 and replay.json()["status"] == "processed"


def test_every_notification_is_kept_with_what_matters(client):  # issue point 8
    order = place_order(client)
    txn = txn_id()
    notify(client, order=order, txn=txn)
    kept = notifications(client)
    assert len(kept) == 1
    n = kept[0]
    assert n["gateway"] == "mock" and n["gateway_txn_id"] == txn and n["order_id"] == order["order_id"]
    assert n["outcome"] == "processed" and n["verification"] == "not_required"
    assert json.loads(n["body"])["gateway_txn_id"] == txn and n["http_status"] == 200
    assert "content-type" in n["headers"] and n["received_at"]
    assert n["request_id"]  # the id every log line of this notification carries
    bad = client.get("/admin/tenants/default/notifications", headers=OPERATOR, params={"outcome": "nope"})
    assert bad.status_code == 422


def test_malformed_notifications_are_422_and_kept(client):
    for payload in (b"{not json", b'{"order_id": "1", "gateway_txn_id": "x", "status": "SUCCESS", "amount": 1}',
                    b'{"order_id": 1, "gateway_txn_id": "x", "status": "MAYBE", "amount": 1}',
                    b'{"order_id": 1, "gateway_txn_id": "", "status": "SUCCESS", "amount": 1}',
                    b'{"order_id": 1, "gateway_txn_id": "x", "status": "SUCCESS", "amount": -5}'):
        r = client.post("/payments/notify", content=payload, headers={"Content-Type": "application/json"})
        assert r.status_code == 422, payload
        assert r.json()["status"] == "error" and r.json()["code"] in ("invalid_json", "validation_error")
    assert {n["outcome"] for n in notifications(client)} == {"rejected"}
