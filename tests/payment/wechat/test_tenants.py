"""Two tenants with their own WeChat Pay merchants: nothing of one ever reaches the other."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from tests.conftest import make_settings
from tests.factories import CUSTOMER, OPERATOR, place_order, product
from tests.payment.wechat.helpers import (
    add_tenant,
    admin_order,
    configure,
    notifications,
    order_in,
    payment,
    refund_note,
    send,
)
from tests.wechat_fakes import WechatPayFake, make_rsa_keypair, new_transaction_id, serve_fake
from ticketing.api.app import create_app
from ticketing.models import Order
from ticketing.payment.gateways.wechat import crypto

B = "metro-b"


def _merchant_b(**changes) -> WechatPayFake:
    values = dict(mchid="1900000200", appid="wxb0000000000000b",
                  public_key_id="PUB_KEY_ID_0200000000000000000000000000",
                  wechat_key=make_rsa_keypair("wechat-public-key-b"),
                  merchant_key=make_rsa_keypair("merchant-b"),
                  merchant_serial="5B00000000000000000000000000000000000B0B")
    values.update(changes)
    return WechatPayFake(**values)


@pytest.fixture
def two(wechat):
    """Tenant `default` (merchant `fake`) and tenant B (its own merchant, keys, customer)."""
    fake_b = _merchant_b()
    headers_b = add_tenant(wechat, B, token="buyer-b-token")
    assert configure(wechat, fake_b, tenant=B).status_code == 200
    return wechat, fake_b, headers_b


def _same_out_trade_no(client, order_a, order_b) -> dict:
    with client.app.state.db.transaction() as session:
        session.execute(update(Order).where(Order.id == order_b["order_id"])
                        .values(out_trade_no=order_a["out_trade_no"]))
    return dict(order_b, out_trade_no=order_a["out_trade_no"])


def _state(client, order, tenant):
    detail = admin_order(client, order["order_id"], tenant=tenant)
    return detail["payment_status"], len(detail["tickets"]), detail["transaction_id"]


def test_same_out_trade_no_and_transaction_id_in_two_tenants_never_mix(two, fake):
    client, fake_b, headers_b = two
    order_a = place_order(client)
    order_b = _same_out_trade_no(client, order_a, order_in(client, headers_b, qty=2))
    txn = new_transaction_id()
    assert send(client, payment(fake, order_a, txn=txn)).status_code == 204
    assert _state(client, order_a, "default") == (2, 1, txn)
    assert _state(client, order_b, B) == (0, 0, None)
    assert send(client, payment(fake_b, order_b, txn=txn), tenant=B).status_code == 204
    assert _state(client, order_b, B) == (2, 2, txn)
    assert _state(client, order_a, "default") == (2, 1, txn)
    assert product(client, 101, tenant=B)["sold"] == 2
    log_a, log_b = notifications(client), notifications(client, tenant=B)
    assert [(n["order_id"], n["outcome"]) for n in log_a] == [(order_a["order_id"], "processed")]
    assert [(n["order_id"], n["outcome"]) for n in log_b] == [(order_b["order_id"], "processed")]
    # a refund of that out_trade_no made in A's merchant platform refunds A's order only
    done = refund_note(fake, order_a, out_refund_no="SAME-REFUND", transaction_id=txn)
    assert send(client, done).status_code == 204
    assert admin_order(client, order_a["order_id"])["status"] == "REFUNDED"
    assert admin_order(client, order_b["order_id"], tenant=B)["status"] == "PAID"


@pytest.mark.parametrize("b_merchant,verification,status", [
    ("own_keys", "failed:unknown_serial", 401),
    ("same_wechat_key", "failed:decrypt_failed", 400),
    ("same_wechat_key_and_apiv3_key", "failed:wrong_merchant", 403),
])
def test_a_notification_for_tenant_a_sent_to_tenant_b_changes_nothing(wechat, fake, b_merchant,
                                                                     verification, status):
    headers_b = add_tenant(wechat, B, token="buyer-b-token")
    shared = {"own_keys": {},
              "same_wechat_key": dict(public_key_id=fake.public_key_id,
                                      wechat_key=fake.wechat_key),
              "same_wechat_key_and_apiv3_key": dict(public_key_id=fake.public_key_id,
                                                    wechat_key=fake.wechat_key,
                                                    apiv3_key=fake.apiv3_key)}[b_merchant]
    assert configure(wechat, _merchant_b(**shared), tenant=B).status_code == 200
    order_a = place_order(wechat)
    order_b = _same_out_trade_no(wechat, order_a, order_in(wechat, headers_b))
    signed = payment(fake, order_a, amount=order_b["total_amount"])  # fits B's order exactly
    r = send(wechat, signed, tenant=B)
    assert r.status_code == status and r.json()["code"] == "FAIL"
    assert _state(wechat, order_b, B) == (0, 0, None)
    assert _state(wechat, order_a, "default") == (0, 0, None)
    [note] = notifications(wechat, tenant=B)
    assert (note["outcome"], note["verification"]) == ("rejected", verification)
    assert notifications(wechat) == []


def test_no_endpoint_shows_one_tenant_to_the_other(two, fake):
    client, fake_b, headers_b = two
    order_a = place_order(client)
    order_b = order_in(client, headers_b)
    assert send(client, payment(fake, order_a)).status_code == 204
    assert send(client, payment(fake_b, order_b), tenant=B).status_code == 204
    view_b = client.get(f"/admin/tenants/{B}/gateways/wechat", headers=OPERATOR).json()
    assert view_b["mchid"] == fake_b.mchid and view_b["public_key_id"] == fake_b.public_key_id
    assert client.get("/admin/tenants/default/gateways/wechat", headers=OPERATOR
                      ).json()["mchid"] == fake.mchid
    # B's customer, B's admin paths and B's notification log know nothing of A's order
    assert client.get(f"/orders/{order_a['order_id']}", headers=headers_b).status_code == 404
    assert client.get(f"/admin/tenants/{B}/orders/{order_a['order_id']}",
                      headers=OPERATOR).status_code == 404
    assert client.get(f"/orders/{order_b['order_id']}", headers=CUSTOMER).status_code == 404
    assert client.get("/my/tickets", headers={**CUSTOMER, "X-Tenant-ID": B}).status_code == 401
    a_codes = {t["ticket_code"] for t in client.get("/my/tickets", headers=CUSTOMER)
               .json()["tickets"]}
    b_codes = {t["ticket_code"] for t in client.get("/my/tickets", headers=headers_b)
               .json()["tickets"]}
    assert len(a_codes) == len(b_codes) == 1 and not a_codes & b_codes
    assert {n["order_id"] for n in notifications(client, tenant=B)} == {order_b["order_id"]}
    assert client.post(f"/orders/{order_a['order_id']}/pay", headers=headers_b,
                       json={"gateway": "wechat", "payer_openid": "o1"}).status_code == 404


def test_each_tenant_pays_through_its_own_merchant(two, fake, db_url, tmp_path):
    client, fake_b, headers_b = two
    order_b = order_in(client, headers_b)
    with serve_fake(fake_b) as base_url:
        settings = make_settings(db_url, tmp_path, wechat_api_base=base_url,
                                 public_base_url="https://t.example")
        with TestClient(create_app(settings, database=client.app.state.db)) as app_b:
            r = app_b.post(f"/orders/{order_b['order_id']}/pay", headers=headers_b,
                           json={"gateway": "wechat", "payer_openid": "o-b"})
    assert r.status_code == 200, r.text
    [sent] = fake_b.requests
    assert sent["json"]["notify_url"] == f"https://t.example/tenants/{B}/payments/wechat/notify"
    assert (sent["json"]["mchid"], sent["json"]["appid"]) == (fake_b.mchid, fake_b.appid)
    crypto.verify_authorization(sent["headers"]["Authorization"],
                                fake_b.merchant_key.public_key(), "POST", sent["path"],
                                sent["body"], now=datetime.now(UTC))
    assert crypto.verify_jsapi_pay_params(r.json()["wechat"], fake_b.merchant_key.public_key())
    assert not crypto.verify_jsapi_pay_params(r.json()["wechat"], fake.merchant_key.public_key())
    assert fake.requests == []
