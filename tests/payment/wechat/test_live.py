"""WeChat Pay against a real `ticketing serve`: the log of every step, and a storm of twins."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.factories import CUSTOMER, OPERATOR, place_order
from tests.payment.wechat.helpers import configure, notify_path, payment, refund_note
from tests.wechat_fakes import new_transaction_id

OPENID = "oSecretPayer_openid_0000000001"
STEPS = ("wechat.notification.received", "wechat.notification.verified",
         "wechat.notification.decrypted", "order.state_changed", "notification.handled",
         "wechat.notification.answered", "wechat.notification.rejected",
         "wechat.refund.order_found", "wechat.refund.state_changed", "wechat.answered")


def _post(c: httpx.Client, signed, tenant: str = "default") -> httpx.Response:
    headers, body = signed
    return c.post(notify_path(tenant), content=body, headers=headers)


def _secrets(fake) -> list[str]:
    pem_lines = [l for l in fake.merchant_private_key_pem.splitlines() if "-----" not in l]
    return [fake.apiv3_key.decode(), "PRIVATE KEY", OPENID, *pem_lines]


def test_every_step_is_logged_with_ids_and_no_secret_ever_is(db_url, live_server_factory, fake,
                                                              wechat_base):
    server = live_server_factory(db_url, workers=1, TICKETING_LOG_LEVEL="INFO",
                                 TICKETING_WECHAT_API_BASE=wechat_base)
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        assert configure(c, fake).status_code == 200
        assert configure(c, fake, merchant_private_key_pem=fake.merchant_private_key_pem[:-40]
                         ).status_code == 422
        assert c.get("/admin/tenants/default/gateways/wechat", headers=OPERATOR).status_code == 200
        order = place_order(c)
        pay = c.post(f"/orders/{order['order_id']}/pay", headers=CUSTOMER,
                     json={"gateway": "wechat", "payer_openid": OPENID})
        assert pay.status_code == 200, pay.text
        txn = new_transaction_id()
        assert _post(c, payment(fake, order, txn=txn, tamper="apiv3_key")).status_code == 400
        assert _post(c, payment(fake, order, txn=txn, tamper="signature")).status_code == 401
        assert _post(c, payment(fake, order, txn=txn, payer_openid=OPENID)).status_code == 204
        refund = c.post(f"/admin/tenants/default/orders/{order['order_id']}/refund",
                        headers=OPERATOR).json()["refund"]
        done = refund_note(fake, order, out_refund_no=refund["out_refund_no"], transaction_id=txn)
        assert _post(c, done).status_code == 204
        everything = c.get("/admin/tenants/default/notifications", headers=OPERATOR).text
    server.stop()
    text = server.log_path.read_text()
    for secret in _secrets(fake):
        assert secret not in text
        assert secret not in everything
    lines = [json.loads(l) for l in text.splitlines() if l.startswith("{")]
    events = {line["event"] for line in lines}
    assert set(STEPS) <= events, set(STEPS) - events
    for line in lines:
        if line["event"].startswith("wechat.notification.") and line["event"] != \
                "wechat.notification.received":
            assert line["tenant_id"] == 1, line
    answered = [l for l in lines if l["event"] == "wechat.notification.answered"]
    assert [(l["outcome"], l["http_status"]) for l in answered] == [
        ("rejected", 400), ("rejected", 401), ("processed", 204), ("processed", 204)]
    paid = answered[2]
    assert paid["order_id"] == order["order_id"] and paid["gateway_txn_id"] == txn
    changed = [l for l in lines if l["event"] == "order.state_changed"]
    assert [(l["to_state"], l["tickets"]) for l in changed] == [(1, 0), (2, 1), (3, 0)]


def test_twenty_identical_notifications_at_once_issue_one_set_of_tickets(pg_url,
                                                                         live_server_factory,
                                                                         fake):
    server = live_server_factory(pg_url, workers=2)
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        assert configure(c, fake).status_code == 200
        order = place_order(c, items=[(101, 3)])
        signed = payment(fake, order)
        start = threading.Barrier(20)

        def one(_: int) -> int:
            with httpx.Client(base_url=server.base_url, timeout=60) as own:
                start.wait()
                return _post(own, signed).status_code

        with ThreadPoolExecutor(20) as pool:
            statuses = list(pool.map(one, range(20)))
        assert statuses == [204] * 20
        detail = c.get(f"/admin/tenants/default/orders/{order['order_id']}",
                       headers=OPERATOR).json()
        assert detail["payment_status"] == 2 and len(detail["tickets"]) == 3
        product = c.get("/admin/tenants/default/products/101", headers=OPERATOR).json()
        assert product["sold"] == 3 and product["reserved"] == 0
        outcomes = [n["outcome"] for n in c.get("/admin/tenants/default/notifications",
                                                headers=OPERATOR).json()["notifications"]]
        assert sorted(outcomes) == ["processed"] + ["replayed"] * 19
