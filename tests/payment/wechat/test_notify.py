"""WeChat Pay payment notifications: every trade_state, replays, and what is recorded."""

from __future__ import annotations

import pytest

from tests.factories import CUSTOMER, place_order, product
from tests.payment.wechat.helpers import (
    admin_order,
    configure,
    notifications,
    notify_path,
    paid,
    payment,
    send,
)
from tests.wechat_fakes import new_transaction_id


def _assert_no_body(r) -> None:
    assert r.status_code == 204, r.text
    assert r.content == b""


def test_success_pays_records_time_and_transaction_and_issues_tickets(wechat, fake):
    before = product(wechat, 101)
    order = place_order(wechat, items=[(101, 2)])
    txn = new_transaction_id()
    r = send(wechat, payment(fake, order, txn=txn, success_time="2026-05-01T10:00:05+08:00"))
    _assert_no_body(r)
    detail = admin_order(wechat, order["order_id"])
    assert (detail["status"], detail["payment_status"]) == ("PAID", 2)
    assert detail["paid_at"] == "2026-05-01T02:00:05+00:00"
    assert detail["transaction_id"] == txn and detail["gateway"] == "wechat"
    assert len(detail["tickets"]) == 2 and {t["status"] for t in detail["tickets"]} == {"ACTIVE"}
    mine = wechat.get("/my/tickets", headers=CUSTOMER).json()["tickets"]
    assert {t["ticket_code"] for t in mine} == {t["ticket_code"] for t in detail["tickets"]}
    after = product(wechat, 101)
    assert after["stock"] == before["stock"] - 2 and after["sold"] == before["sold"] + 2
    assert after["reserved"] == before["reserved"]
    [note] = notifications(wechat)
    assert note["gateway"] == "wechat" and note["event_type"] == "TRANSACTION.SUCCESS"
    assert (note["outcome"], note["verification"]) == ("processed", "verified")
    assert note["gateway_txn_id"] == txn and note["order_id"] == order["order_id"]
    assert note["amount"] == order["total_amount"] and note["trade_status"] == "SUCCESS"
    assert note["headers"]["wechatpay-serial"] == fake.public_key_id
    assert '"resource"' in note["body"] and txn not in note["body"]  # kept encrypted


def test_same_notification_twice_issues_tickets_once(wechat, fake):
    order = place_order(wechat, items=[(101, 3)])
    txn = new_transaction_id()
    signed = payment(fake, order, txn=txn)
    stock = None
    for _ in range(3):
        _assert_no_body(send(wechat, signed))
        stock = stock or product(wechat, 101)
        assert product(wechat, 101) == stock
    # WeChat Pay's own retry: a new envelope, nonce and signature for the same payment
    _assert_no_body(send(wechat, fake.notification("TRANSACTION.SUCCESS",
                                                   paid(fake, order, txn=txn))))
    detail = admin_order(wechat, order["order_id"])
    assert len(detail["tickets"]) == 3
    outcomes = [n["outcome"] for n in notifications(wechat)]
    assert outcomes == ["replayed", "replayed", "replayed", "processed"]


@pytest.mark.parametrize("trade_state,pay_state,status,outcome", [
    ("PAYERROR", 4, "PENDING", "failed"),
    ("CLOSED", 5, "CLOSED", "closed"),
    ("REVOKED", 5, "CLOSED", "closed"),
    ("NOTPAY", 0, "PENDING", "ignored"),
    ("USERPAYING", 0, "PENDING", "ignored"),
    ("REFUND", 0, "PENDING", "ignored"),
])
def test_every_trade_state(wechat, fake, trade_state, pay_state, status, outcome):
    before = product(wechat, 101)
    order = place_order(wechat)
    with_txn = trade_state != "CLOSED"  # a closed payment may carry no transaction id
    txn = new_transaction_id() if with_txn else None
    signed = fake.notification("TRANSACTION.SUCCESS",
                               paid(fake, order, txn=txn, trade_state=trade_state))
    _assert_no_body(send(wechat, signed))
    detail = admin_order(wechat, order["order_id"])
    assert (detail["payment_status"], detail["status"], detail["tickets"]) == (
        pay_state, status, [])
    held = 0 if status == "CLOSED" else 1
    assert product(wechat, 101)["reserved"] == before["reserved"] + held
    [note] = notifications(wechat)
    assert note["outcome"] == outcome and note["order_id"] == order["order_id"]
    assert note["trade_status"] == trade_state
    assert note["gateway_txn_id"] == (txn or f"{order['out_trade_no']}:CLOSED")


def test_failed_payment_then_a_new_payment_succeeds(wechat, fake):
    order = place_order(wechat)
    failed = fake.notification("TRANSACTION.SUCCESS", paid(fake, order, trade_state="PAYERROR"))
    _assert_no_body(send(wechat, failed))
    _assert_no_body(send(wechat, failed))  # replay of the failure
    assert admin_order(wechat, order["order_id"])["payment_status"] == 4
    _assert_no_body(send(wechat, payment(fake, order)))
    detail = admin_order(wechat, order["order_id"])
    assert detail["payment_status"] == 2 and len(detail["tickets"]) == 1
    assert [n["outcome"] for n in notifications(wechat)] == ["processed", "replayed", "failed"]
    assert notifications(wechat)[-1]["gateway_txn_id"] == f"{order['out_trade_no']}:PAYERROR"


def test_late_failure_never_undoes_a_success(wechat, fake):
    order = place_order(wechat)
    _assert_no_body(send(wechat, payment(fake, order)))
    tickets = admin_order(wechat, order["order_id"])["tickets"]
    late = fake.notification("TRANSACTION.SUCCESS", paid(fake, order, trade_state="PAYERROR"))
    _assert_no_body(send(wechat, late))
    closed = fake.notification("TRANSACTION.SUCCESS", paid(fake, order, trade_state="CLOSED"))
    _assert_no_body(send(wechat, closed))
    detail = admin_order(wechat, order["order_id"])
    assert (detail["status"], detail["payment_status"]) == ("PAID", 2)
    assert detail["tickets"] == tickets
    assert [n["outcome"] for n in notifications(wechat)] == ["ignored", "ignored", "processed"]


def test_amount_that_is_not_the_order_total_is_a_conflict(wechat, fake):
    order = place_order(wechat)
    r = send(wechat, payment(fake, order, amount=order["total_amount"] - 1))
    assert r.status_code == 409
    assert r.json()["code"] == "FAIL" and "amount" in r.json()["message"]
    detail = admin_order(wechat, order["order_id"])
    assert detail["payment_status"] == 0 and detail["tickets"] == []
    [note] = notifications(wechat)
    assert (note["outcome"], note["http_status"]) == ("conflict", 409)


def test_transaction_id_reused_for_another_order_is_a_conflict(wechat, fake):
    first, second = place_order(wechat), place_order(wechat)
    txn = new_transaction_id()
    _assert_no_body(send(wechat, payment(fake, first, txn=txn)))
    r = send(wechat, payment(fake, second, txn=txn))
    assert r.status_code == 409 and r.json()["code"] == "FAIL"
    assert admin_order(wechat, second["order_id"])["payment_status"] == 0


def test_success_for_a_paid_order_is_kept_for_refund(wechat, fake):
    order = place_order(wechat)
    _assert_no_body(send(wechat, payment(fake, order)))
    _assert_no_body(send(wechat, payment(fake, order)))  # a second, different payment
    detail = admin_order(wechat, order["order_id"])
    assert detail["needs_refund"] is True and len(detail["tickets"]) == 1
    assert notifications(wechat)[0]["outcome"] == "needs_refund"


def test_unknown_order_is_404_fail(wechat, fake):
    order = dict(place_order(wechat), out_trade_no="20990101000000NOSUCHORDER")
    r = send(wechat, payment(fake, order))
    assert r.status_code == 404 and r.json() == {"code": "FAIL", "message": "Order not found"}
    assert notifications(wechat)[0]["outcome"] == "not_found"


def test_success_without_transaction_id_is_refused(wechat, fake):
    order = place_order(wechat)
    plain = paid(fake, order)
    del plain["transaction_id"]
    r = send(wechat, fake.notification("TRANSACTION.SUCCESS", plain))
    assert r.status_code == 400 and r.json()["code"] == "FAIL"
    [note] = notifications(wechat)
    assert (note["outcome"], note["verification"]) == ("rejected", "failed:bad_resource")
    assert admin_order(wechat, order["order_id"])["payment_status"] == 0


def test_signed_body_that_is_not_an_envelope_is_refused(wechat, fake):
    for body in (b"not json", b'{"event_type":"TRANSACTION.SUCCESS"}', b"[]"):
        r = wechat.post(notify_path(), content=body, headers=fake.signed_headers(body))
        assert r.status_code == 400 and r.json()["code"] == "FAIL"
    assert {n["verification"] for n in notifications(wechat)} == {"failed:bad_envelope"}


def test_event_the_service_does_not_handle_is_kept_and_answered(wechat, fake):
    r = send(wechat, fake.notification("MARKETING.COUPON.USED", {"mchid": fake.mchid,
                                                                  "appid": fake.appid}))
    _assert_no_body(r)
    [note] = notifications(wechat)
    assert (note["outcome"], note["event_type"]) == ("ignored", "MARKETING.COUPON.USED")


def test_tenant_without_wechat_settings_refuses(client, fake):
    order = place_order(client)
    r = send(client, payment(fake, order))
    assert r.status_code == 404 and r.json()["code"] == "FAIL"
    [note] = notifications(client)
    assert (note["outcome"], note["verification"]) == ("rejected", "failed:not_configured")
    assert admin_order(client, order["order_id"])["payment_status"] == 0


def test_unknown_tenant_is_404_fail_and_recorded_nowhere(wechat, fake):
    order = place_order(wechat)
    for slug in ("nobody", "NOT A SLUG", "x" * 80):
        r = send(wechat, payment(fake, order), tenant=slug)
        assert r.status_code == 404 and r.json()["code"] == "FAIL"
    assert notifications(wechat) == []
    assert admin_order(wechat, order["order_id"])["payment_status"] == 0


def test_key_material_can_change_after_payment_without_losing_replays(wechat, fake):
    order = place_order(wechat)
    signed = payment(fake, order)
    _assert_no_body(send(wechat, signed))
    r = configure(wechat, fake, apiv3_key=None, merchant_private_key_pem=None)
    assert r.status_code == 200, r.text  # secrets kept when left out
    _assert_no_body(send(wechat, signed))
    assert [n["outcome"] for n in notifications(wechat)] == ["replayed", "processed"]
