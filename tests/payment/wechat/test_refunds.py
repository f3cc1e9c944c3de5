"""WeChat Pay refund notifications: SUCCESS completes once, ABNORMAL/CLOSED are kept."""

from __future__ import annotations

from sqlalchemy import select

from tests.factories import OPERATOR, notify, place_order, product, txn_id
from tests.payment.wechat.helpers import admin_order, notifications, payment, refund_note, send
from tests.wechat_fakes import new_transaction_id
from ticketing.audit.checker import check_database
from ticketing.models import Refund


def _refunds(client, order_id: int) -> list[tuple[str, str, int, str | None]]:
    with client.app.state.db.transaction(readonly=True) as session:
        rows = session.execute(select(Refund).where(Refund.order_id == order_id)
                               .order_by(Refund.id)).scalars()
        return [(r.out_refund_no, r.status, r.amount, r.gateway_refund_id) for r in rows]


def _paid_order(client, fake, qty: int = 1) -> tuple[dict, str]:
    order = place_order(client, items=[(101, qty)])
    txn = new_transaction_id()
    assert send(client, payment(fake, order, txn=txn)).status_code == 204
    return order, txn


def _operator_refund(client, order) -> dict:
    r = client.post(f"/admin/tenants/default/orders/{order['order_id']}/refund", headers=OPERATOR)
    assert r.status_code == 200, r.text
    return r.json()["refund"]


def _books_balance(client) -> None:
    assert check_database(client.app.state.db) == []


def test_refund_made_in_the_merchant_platform_is_recorded_and_completed(wechat, fake):
    before = product(wechat, 101)
    order, txn = _paid_order(wechat, fake, qty=2)
    done = refund_note(fake, order, out_refund_no="MP-REFUND-1", refund_id="5030000001",
                       transaction_id=txn)
    assert send(wechat, done).status_code == 204
    detail = admin_order(wechat, order["order_id"])
    assert (detail["status"], detail["payment_status"]) == ("REFUNDED", 3)
    assert {t["status"] for t in detail["tickets"]} == {"VOID"}
    assert product(wechat, 101)["stock"] == before["stock"]
    assert _refunds(wechat, order["order_id"]) == [
        ("MP-REFUND-1", "SUCCESS", order["total_amount"], "5030000001")]
    # the same notification again, and WeChat Pay's re-sent copy: nothing more happens
    assert send(wechat, done).status_code == 204
    again = refund_note(fake, order, out_refund_no="MP-REFUND-1", refund_id="5030000001",
                        transaction_id=txn)
    assert send(wechat, again).status_code == 204
    assert product(wechat, 101)["stock"] == before["stock"]
    notes = notifications(wechat)
    assert [n["outcome"] for n in notes] == ["replayed", "replayed", "processed", "processed"]
    assert notes[2]["event_type"] == "REFUND.SUCCESS" and notes[2]["order_id"] == order["order_id"]
    assert notes[2]["gateway_txn_id"] == "5030000001"
    _books_balance(wechat)


def test_abnormal_then_success_on_an_operator_refund(wechat, fake):
    order, txn = _paid_order(wechat, fake)
    refund = _operator_refund(wechat, order)
    no, rid = refund["out_refund_no"], refund["gateway_refund_id"]
    abnormal = refund_note(fake, order, out_refund_no=no, refund_id=rid, status="ABNORMAL")
    assert send(wechat, abnormal).status_code == 204
    assert admin_order(wechat, order["order_id"])["status"] == "PAID"
    assert _refunds(wechat, order["order_id"])[0][1] == "ABNORMAL"
    assert send(wechat, abnormal).status_code == 204
    success = refund_note(fake, order, out_refund_no=no, refund_id=rid)
    assert send(wechat, success).status_code == 204
    assert admin_order(wechat, order["order_id"])["status"] == "REFUNDED"
    late = refund_note(fake, order, out_refund_no=no, refund_id=rid, status="CLOSED")
    assert send(wechat, late).status_code == 204  # a success is never undone
    assert admin_order(wechat, order["order_id"])["status"] == "REFUNDED"
    assert _refunds(wechat, order["order_id"])[0][1] == "SUCCESS"
    assert [n["outcome"] for n in notifications(wechat)][:4] == [
        "ignored", "processed", "replayed", "processed"]
    _books_balance(wechat)


def test_closed_refund_leaves_the_order_paid_and_refundable_again(wechat, fake):
    order, _txn = _paid_order(wechat, fake)
    refund = _operator_refund(wechat, order)
    closed = refund_note(fake, order, out_refund_no=refund["out_refund_no"], status="CLOSED")
    assert send(wechat, closed).status_code == 204
    detail = admin_order(wechat, order["order_id"])
    assert detail["status"] == "PAID" and {t["status"] for t in detail["tickets"]} == {"ACTIVE"}
    second = _operator_refund(wechat, order)
    assert second["out_refund_no"] != refund["out_refund_no"]
    assert send(wechat, refund_note(fake, order, out_refund_no=second["out_refund_no"])
                ).status_code == 204
    assert admin_order(wechat, order["order_id"])["status"] == "REFUNDED"
    assert [s for _no, s, _a, _r in _refunds(wechat, order["order_id"])] == ["CLOSED", "SUCCESS"]
    _books_balance(wechat)


def test_refund_of_an_extra_payment_clears_the_flag_and_keeps_the_order(wechat, fake):
    order, _first = _paid_order(wechat, fake)
    extra = new_transaction_id()
    assert send(wechat, payment(fake, order, txn=extra)).status_code == 204
    assert admin_order(wechat, order["order_id"])["needs_refund"] is True
    done = refund_note(fake, order, out_refund_no="MP-EXTRA", transaction_id=extra)
    assert send(wechat, done).status_code == 204
    detail = admin_order(wechat, order["order_id"])
    assert (detail["status"], detail["needs_refund"]) == ("PAID", False)
    assert {t["status"] for t in detail["tickets"]} == {"ACTIVE"}
    _books_balance(wechat)


def test_refund_amount_that_is_not_the_refund_is_a_conflict(wechat, fake):
    order, txn = _paid_order(wechat, fake)
    r = send(wechat, refund_note(fake, order, out_refund_no="MP-2", transaction_id=txn,
                                 amount=order["total_amount"] - 100))
    assert r.status_code == 409 and r.json()["code"] == "FAIL"
    assert admin_order(wechat, order["order_id"])["status"] == "PAID"
    assert _refunds(wechat, order["order_id"]) == []  # rolled back with the answer
    assert notifications(wechat)[0]["outcome"] == "conflict"
    _books_balance(wechat)


def test_refund_for_an_unknown_unpaid_or_mock_paid_order(wechat, fake):
    unknown = dict(place_order(wechat), out_trade_no="20990101000000NOSUCHORDER")
    r = send(wechat, refund_note(fake, unknown, out_refund_no="MP-3"))
    assert r.status_code == 404 and r.json()["code"] == "FAIL"
    unpaid = place_order(wechat)
    r = send(wechat, refund_note(fake, unpaid, out_refund_no="MP-4"))
    assert r.status_code == 409 and r.json()["code"] == "FAIL"
    by_mock = place_order(wechat)
    assert notify(wechat, order=by_mock, txn=txn_id()).status_code == 200
    r = send(wechat, refund_note(fake, by_mock, out_refund_no="MP-5"))
    assert r.status_code == 409 and "mock" in r.json()["message"]
    assert admin_order(wechat, by_mock["order_id"])["status"] == "PAID"
    outcomes = [n["outcome"] for n in notifications(wechat) if n["gateway"] == "wechat"]
    assert outcomes == ["conflict", "conflict", "not_found"]
    _books_balance(wechat)


def test_refund_number_of_another_order_is_a_conflict(wechat, fake):
    first, _ = _paid_order(wechat, fake)
    second, _ = _paid_order(wechat, fake)
    refund = _operator_refund(wechat, first)
    r = send(wechat, refund_note(fake, second, out_refund_no=refund["out_refund_no"]))
    assert r.status_code == 409
    assert admin_order(wechat, first["order_id"])["status"] == "PAID"
    assert admin_order(wechat, second["order_id"])["status"] == "PAID"


def test_a_second_refund_of_the_same_payment_is_a_conflict(wechat, fake):
    order, txn = _paid_order(wechat, fake)
    refund = _operator_refund(wechat, order)  # still PROCESSING at WeChat Pay
    elsewhere = refund_note(fake, order, out_refund_no="MP-FIRST", transaction_id=txn)
    assert send(wechat, elsewhere).status_code == 204
    assert admin_order(wechat, order["order_id"])["status"] == "REFUNDED"
    late = refund_note(fake, order, out_refund_no=refund["out_refund_no"], transaction_id=txn)
    r = send(wechat, late)
    assert r.status_code == 409 and "already refunded" in r.json()["message"]
    assert [s for _no, s, _a, _r in _refunds(wechat, order["order_id"])] == [
        "PROCESSING", "SUCCESS"]
    _books_balance(wechat)
