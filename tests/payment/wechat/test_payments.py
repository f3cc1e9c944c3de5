"""Starting a WeChat Pay payment and refunding it, against the local fake WeChat Pay."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from tests.conftest import make_settings
from tests.factories import CUSTOMER, OPERATOR, place_order, product
from tests.payment.wechat.helpers import (
    PUBLIC_BASE_URL,
    admin_order,
    configure,
    notifications,
    payment,
    refund_note,
    send,
)
from tests.wechat_fakes import WechatPayFake, new_transaction_id, serve_fake
from ticketing.api.app import create_app
from ticketing.payment.gateways.wechat import crypto

OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"


def _pay(client, order, **body):
    return client.post(f"/orders/{order['order_id']}/pay", headers=CUSTOMER,
                       json={"gateway": "wechat", "payer_openid": OPENID, **body})


def test_pay_places_a_signed_prepay_order_and_returns_pay_params(wechat, fake):
    order = place_order(wechat, items=[(101, 2)])
    r = _pay(wechat, order)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["order_id"] == order["order_id"] and answer["payment_status"] == 1
    params = answer["wechat"]
    assert set(params) == {"appId", "timeStamp", "nonceStr", "package", "signType", "paySign"}
    assert params["appId"] == fake.appid and params["signType"] == "RSA"
    [sent] = fake.requests
    assert sent["path"] == "/v3/pay/transactions/jsapi"
    # the fake answered 200 only because the Authorization signature verified
    crypto.verify_authorization(sent["headers"]["Authorization"], fake.merchant_key.public_key(),
                                "POST", sent["path"], sent["body"], now=datetime.now(UTC))
    body = sent["json"]
    assert body["notify_url"] == f"{PUBLIC_BASE_URL}/tenants/default/payments/wechat/notify"
    assert body["amount"] == {"total": order["total_amount"], "currency": "CNY"}
    assert body["out_trade_no"] == order["out_trade_no"] and body["payer"] == {"openid": OPENID}
    assert (body["mchid"], body["appid"]) == (fake.mchid, fake.appid)
    assert params["package"] == f"prepay_id={fake.orders[order['out_trade_no']]['prepay_id']}"
    assert crypto.verify_jsapi_pay_params(params, fake.merchant_key.public_key())
    detail = admin_order(wechat, order["order_id"])
    assert (detail["payment_status"], detail["gateway"]) == (1, "wechat")
    # then WeChat Pay notifies: paid
    assert send(wechat, payment(fake, order)).status_code == 204
    assert admin_order(wechat, order["order_id"])["payment_status"] == 2


def test_payer_openid_is_required(wechat, fake):
    order = place_order(wechat)
    r = wechat.post(f"/orders/{order['order_id']}/pay", headers=CUSTOMER,
                    json={"gateway": "wechat"})
    assert r.status_code == 422 and r.json()["code"] == "payer_openid_required"
    assert fake.requests == [] and admin_order(wechat, order["order_id"])["payment_status"] == 0


def test_pay_without_wechat_settings_is_409(client, fake):
    order = place_order(client)
    r = _pay(client, order)
    assert r.status_code == 409 and r.json()["code"] == "gateway_not_configured"
    configure(client, fake, merchant_serial_no=None, merchant_private_key_pem=None)
    r = _pay(client, order)
    assert r.status_code == 409 and r.json()["code"] == "gateway_not_configured"
    assert fake.requests == []


@pytest.mark.parametrize("status,answer", [
    (400, {"code": "PARAM_ERROR", "message": "appid and mchid do not match"}),
    (500, {"code": "SYSTEM_ERROR", "message": "busy"}),
])
def test_wechat_refusal_is_502_with_its_code(wechat, fake, status, answer):
    order = place_order(wechat)
    fake.forced_responses.append((status, answer))
    r = _pay(wechat, order)
    assert r.status_code == 502
    assert r.json()["code"] == "gateway_error" and r.json()["gateway_code"] == answer["code"]
    assert answer["message"] in r.json()["error"]
    assert fake.apiv3_key.decode() not in r.text and "PRIVATE" not in r.text
    assert admin_order(wechat, order["order_id"])["payment_status"] == 0


def test_answer_without_a_valid_wechat_signature_is_refused(wechat, fake):
    order = place_order(wechat)
    fake.response_serial = fake.public_key_id + "X"  # signed, but not under a configured key
    r = _pay(wechat, order)
    assert r.status_code == 502 and r.json()["code"] == "gateway_bad_signature"
    assert admin_order(wechat, order["order_id"])["payment_status"] == 0


@contextmanager
def _app_using(client, db_url, tmp_path, base_url) -> Iterator[TestClient]:
    """Another app on the same database whose WeChat Pay API is at `base_url`."""
    settings = make_settings(db_url, tmp_path, wechat_api_base=base_url)
    with TestClient(create_app(settings, database=client.app.state.db)) as other:
        yield other


def test_unreachable_wechat_is_502(client, fake, db_url, tmp_path):
    configure(client, fake)
    order = place_order(client)
    with _app_using(client, db_url, tmp_path, "http://127.0.0.1:9") as other:
        r = _pay(other, order)
    assert r.status_code == 502 and r.json()["code"] == "gateway_unreachable"
    assert admin_order(client, order["order_id"])["payment_status"] == 0


def test_pay_in_certificate_mode(client, db_url, tmp_path):
    fake = WechatPayFake.with_certificate()
    fake.response_serial = fake.platform_serial  # WeChat Pay signs answers with its certificate
    assert configure(client, fake, public_key=False).status_code == 200
    with serve_fake(fake) as base_url, _app_using(client, db_url, tmp_path, base_url) as other:
        r = _pay(other, place_order(client))
    assert r.status_code == 200, r.text
    assert fake.requests[0]["headers"]["Wechatpay-Serial"] == fake.platform_serial


def test_operator_refund_goes_through_wechat_then_its_notification_completes_it(wechat, fake):
    before = product(wechat, 101)
    order = place_order(wechat, items=[(101, 2)])
    txn = new_transaction_id()
    assert send(wechat, payment(fake, order, txn=txn)).status_code == 204
    r = wechat.post(f"/admin/tenants/default/orders/{order['order_id']}/refund", headers=OPERATOR)
    assert r.status_code == 200, r.text
    refund = r.json()["refund"]
    assert refund["status"] == "PROCESSING" and refund["gateway_refund_id"]
    assert r.json()["status"] == "PAID"  # not refunded until WeChat Pay says so
    [sent] = fake.requests
    assert sent["path"] == "/v3/refund/domestic/refunds"
    crypto.verify_authorization(sent["headers"]["Authorization"], fake.merchant_key.public_key(),
                                "POST", sent["path"], sent["body"], now=datetime.now(UTC))
    assert sent["json"]["transaction_id"] == txn
    assert sent["json"]["out_refund_no"] == refund["out_refund_no"]
    assert sent["json"]["amount"] == {"refund": order["total_amount"],
                                      "total": order["total_amount"], "currency": "CNY"}
    assert sent["json"]["notify_url"].endswith("/tenants/default/payments/wechat/notify")
    done = refund_note(fake, order, out_refund_no=refund["out_refund_no"],
                       refund_id=refund["gateway_refund_id"], transaction_id=txn)
    assert send(wechat, done).status_code == 204
    detail = admin_order(wechat, order["order_id"])
    assert (detail["status"], detail["payment_status"]) == ("REFUNDED", 3)
    assert {t["status"] for t in detail["tickets"]} == {"VOID"}
    assert product(wechat, 101)["stock"] == before["stock"]
    assert send(wechat, done).status_code == 204  # once only
    assert [n["outcome"] for n in notifications(wechat)][:2] == ["replayed", "processed"]
    assert product(wechat, 101)["stock"] == before["stock"]
