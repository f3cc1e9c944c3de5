"""Keyword-only helpers for driving the WeChat Pay paths the way WeChat Pay and clients do."""

from __future__ import annotations

from typing import Any

from tests.factories import OPERATOR, place_order
from tests.wechat_fakes import WechatPayFake, new_transaction_id

PUBLIC_BASE_URL = "https://tickets.example.com"


def notify_path(tenant: str = "default") -> str:
    return f"/tenants/{tenant}/payments/wechat/notify"


def configure(client: Any, fake: WechatPayFake, *, tenant: str = "default",
              public_key: bool = True, certificate: bool = True, **changes: Any) -> Any:
    """PUT the fake merchant's settings for `tenant`; returns the response."""
    body = fake.gateway_config(public_key=public_key, certificate=certificate)
    body.update(changes)
    return client.put(f"/admin/tenants/{tenant}/gateways/wechat", json=body, headers=OPERATOR)


def send(client: Any, signed: tuple[dict[str, str], bytes], *, tenant: str = "default") -> Any:
    """POST a (headers, body) notification exactly as WeChat Pay would."""
    headers, body = signed
    return client.post(notify_path(tenant), content=body, headers=headers)


def paid(fake: WechatPayFake, order: dict[str, Any], *, txn: str | None = None,
         trade_state: str = "SUCCESS", amount: int | None = None, **extra: Any
         ) -> dict[str, Any]:
    """A decrypted transaction resource for `order`."""
    total = order["total_amount"] if amount is None else amount
    txn = new_transaction_id() if txn is None and trade_state == "SUCCESS" else txn
    return fake.transaction_resource(order["out_trade_no"], txn, total, trade_state, **extra)


def payment(fake: WechatPayFake, order: dict[str, Any], *, tamper: str | None = None,
            serial: str | None = None, timestamp: int | None = None, **resource: Any
            ) -> tuple[dict[str, str], bytes]:
    """A signed TRANSACTION.SUCCESS notification for `order`."""
    return fake.notification("TRANSACTION.SUCCESS", paid(fake, order, **resource),
                             tamper=tamper, serial=serial, timestamp=timestamp)


def refund_note(fake: WechatPayFake, order: dict[str, Any], *, out_refund_no: str,
                status: str = "SUCCESS", refund_id: str = "50300000000000000000000000001",
                amount: int | None = None, transaction_id: str | None = None
                ) -> tuple[dict[str, str], bytes]:
    """A signed REFUND.<status> notification for `order`."""
    total = order["total_amount"]
    plain = fake.refund_resource(order["out_trade_no"], out_refund_no, refund_id, status, total,
                                 total if amount is None else amount,
                                 transaction_id=transaction_id)
    return fake.notification(f"REFUND.{status}", plain)


def notifications(client: Any, *, tenant: str = "default", **params: Any) -> list[dict]:
    """The operator's notification log of `tenant`, newest first."""
    r = client.get(f"/admin/tenants/{tenant}/notifications", headers=OPERATOR, params=params)
    assert r.status_code == 200, r.text
    return r.json()["notifications"]


def admin_order(client: Any, order_id: int, *, tenant: str = "default") -> dict[str, Any]:
    r = client.get(f"/admin/tenants/{tenant}/orders/{order_id}", headers=OPERATOR)
    assert r.status_code == 200, r.text
    return r.json()


def add_tenant(client: Any, slug: str, *, token: str, price: int = 5000) -> dict[str, str]:
    """A second tenant with its own product 101 and customer; returns its customer headers."""
    for path, body in ((("/admin/tenants"), {"slug": slug, "name": slug.title()}),
                       (f"/admin/tenants/{slug}/products",
                        {"product_id": 101, "name": f"{slug} day pass", "price": price,
                         "stock": 50, "entitlements": [{"code": "metro", "name": "Metro",
                                                        "uses": 1}]}),
                       (f"/admin/tenants/{slug}/users",
                        {"name": "buyer", "role": "customer", "token": token})):
        r = client.post(path, json=body, headers=OPERATOR)
        assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {token}", "X-Tenant-ID": slug}


def order_in(client: Any, headers: dict[str, str], qty: int = 1) -> dict[str, Any]:
    """A new order of product 101 for the customer with `headers`."""
    return place_order(client, items=[(101, qty)], headers=headers)
