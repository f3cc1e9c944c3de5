"""Notifications that fail a check are refused with FAIL, kept as `rejected`, change nothing."""

from __future__ import annotations

import time

import pytest

from tests.factories import CUSTOMER, place_order, product
from tests.payment.wechat.helpers import (
    admin_order,
    configure,
    notifications,
    paid,
    payment,
    send,
)

REFUSED = [  # tamper, HTTP status, verification recorded
    ("body", 401, "failed:bad_signature"),
    ("signature", 401, "failed:bad_signature"),
    ("wrong_signer", 401, "failed:bad_signature"),
    ("probe", 401, "failed:signature_probe"),
    ("signature_type", 401, "failed:bad_signature_type"),
    ("ciphertext", 400, "failed:decrypt_failed"),
    ("aad", 400, "failed:decrypt_failed"),
    ("apiv3_key", 400, "failed:decrypt_failed"),
]


def _assert_untouched(client, order, stock) -> None:
    detail = admin_order(client, order["order_id"])
    assert (detail["payment_status"], detail["tickets"], detail["transaction_id"]) == (0, [], None)
    assert product(client, 101) == stock


@pytest.mark.parametrize("tamper,status,verification", REFUSED)
def test_tampered_notification_is_refused_and_kept(wechat, fake, tamper, status, verification):
    order = place_order(wechat)
    stock = product(wechat, 101)
    r = send(wechat, payment(fake, order, tamper=tamper))
    assert r.status_code == status
    assert r.json()["code"] == "FAIL" and r.json()["message"]
    _assert_untouched(wechat, order, stock)
    [note] = notifications(wechat, outcome="rejected")
    assert note["verification"] == verification and note["http_status"] == status
    assert note["order_id"] is None and note["body"]
    # the genuine notification still goes through afterwards
    assert send(wechat, payment(fake, order)).status_code == 204
    assert admin_order(wechat, order["order_id"])["payment_status"] == 2


@pytest.mark.parametrize("skew,accepted", [(-301, False), (301, False), (-280, True), (280, True)])
def test_timestamp_must_be_within_five_minutes(wechat, fake, skew, accepted):
    order = place_order(wechat)
    r = send(wechat, payment(fake, order, timestamp=int(time.time()) + skew))
    if accepted:
        assert r.status_code == 204
        return
    assert r.status_code == 401 and r.json()["code"] == "FAIL"
    assert notifications(wechat)[0]["verification"] == "failed:bad_timestamp"
    assert admin_order(wechat, order["order_id"])["payment_status"] == 0


def test_unknown_serial_is_refused(wechat, fake):
    order = place_order(wechat)
    r = send(wechat, payment(fake, order, serial="PUB_KEY_ID_0000000000000000000000000000"))
    assert r.status_code == 401
    assert notifications(wechat)[0]["verification"] == "failed:unknown_serial"


@pytest.mark.parametrize("header", ["Wechatpay-Serial", "Wechatpay-Signature",
                                    "Wechatpay-Timestamp", "Wechatpay-Nonce"])
def test_missing_header_is_refused(wechat, fake, header):
    order = place_order(wechat)
    headers, body = payment(fake, order)
    del headers[header]
    r = send(wechat, (headers, body))
    assert r.status_code == 401 and r.json()["code"] == "FAIL"
    assert notifications(wechat)[0]["verification"] == "failed:missing_header"


@pytest.mark.parametrize("field,value", [("mchid", "1900000999"), ("appid", "wxotherapp000000")])
def test_resource_for_another_merchant_or_app_is_refused(wechat, fake, field, value):
    order = place_order(wechat)
    stock = product(wechat, 101)
    signed = fake.notification("TRANSACTION.SUCCESS", paid(fake, order, **{field: value}))
    r = send(wechat, signed)
    assert r.status_code == 403 and r.json()["code"] == "FAIL"
    _assert_untouched(wechat, order, stock)
    [note] = notifications(wechat)
    assert (note["outcome"], note["verification"]) == ("rejected", "failed:wrong_merchant")


def test_refund_for_another_merchant_is_refused(wechat, fake):
    order = place_order(wechat)
    plain = fake.refund_resource(order["out_trade_no"], "RF1", "5030001", "SUCCESS",
                                 order["total_amount"], order["total_amount"])
    plain["mchid"] = "1900000999"
    r = send(wechat, fake.notification("REFUND.SUCCESS", plain))
    assert r.status_code == 403
    assert notifications(wechat)[0]["verification"] == "failed:wrong_merchant"


def test_service_provider_merchant_is_matched_by_sp_and_sub_mchid(client, fake):
    assert configure(client, fake, sp_mchid="1900000001", sub_mchid="1900000002"
                     ).status_code == 200
    order = place_order(client)
    ids = dict(sp_mchid="1900000001", sp_appid=fake.appid)
    other_sub = paid(fake, order, sub_mchid="1900000003", **ids)
    assert send(client, fake.notification("TRANSACTION.SUCCESS", other_sub)).status_code == 403
    no_app = paid(fake, order, sub_mchid="1900000002", sp_mchid="1900000001")
    assert send(client, fake.notification("TRANSACTION.SUCCESS", no_app | {"appid": "wxx"})
                ).status_code == 403
    assert admin_order(client, order["order_id"])["payment_status"] == 0
    mine = paid(fake, order, sub_mchid="1900000002", **ids)
    assert send(client, fake.notification("TRANSACTION.SUCCESS", mine)).status_code == 204
    assert admin_order(client, order["order_id"])["payment_status"] == 2
    r = client.post(f"/orders/{place_order(client)['order_id']}/pay", headers=CUSTOMER,
                    json={"gateway": "wechat", "payer_openid": "o1"})
    assert r.status_code == 409 and r.json()["code"] == "wechat_partner_mode_unsupported"
    assert fake.requests == []
