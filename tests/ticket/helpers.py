"""Keyword-only helpers for ticket tests: a paid ticket, users, a scan at the gate."""

from __future__ import annotations

from typing import Any

from tests.factories import CUSTOMER, OPERATOR, STAFF, notify, place_order, txn_id


def paid_ticket(client: Any, *, product_id: int = 101,
                headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Buy and pay for one unit; returns {"code", "order_id", "txn"}."""
    order = place_order(client, items=[(product_id, 1)], headers=headers or CUSTOMER)
    txn = txn_id()
    response = notify(client, order=order, txn=txn)
    assert response.status_code == 200, response.text
    code = response.json()["tickets_issued"][0]["ticket_code"]
    return {"code": code, "order_id": order["order_id"], "txn": txn}


def new_user(client: Any, *, name: str, role: str, tenant: str = "default") -> dict[str, Any]:
    """Create a user through the operator API; returns its id and Authorization headers."""
    response = client.post(f"/admin/tenants/{tenant}/users", headers=OPERATOR,
                           json={"name": name, "role": role})
    assert response.status_code == 200, response.text
    body = response.json()
    return {"user_id": body["user_id"], "headers": {"Authorization": f"Bearer {body['token']}",
                                                     "X-Tenant-ID": tenant}}


def redeem(client: Any, code: str, *, entitlement: str = "metro", location: str = "Gate 3",
           nonce: str | None = None, headers: dict[str, str] | None = None) -> Any:
    """POST /tickets/{code}/redeem; returns the raw response."""
    body: dict[str, Any] = {"entitlement": entitlement, "location": location}
    if nonce is not None:
        body["nonce"] = nonce
    return client.post(f"/tickets/{code}/redeem", json=body,
                       headers=STAFF if headers is None else headers)


def scans(client: Any, tenant: str = "default", **params: Any) -> list[dict[str, Any]]:
    """The operator's list of scans (GET /admin/tenants/{slug}/redemptions)."""
    response = client.get(f"/admin/tenants/{tenant}/redemptions", headers=OPERATOR, params=params)
    assert response.status_code == 200, response.text
    return response.json()["redemptions"]
