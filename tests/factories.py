"""Keyword-only helpers that drive the API the way clients do."""

from __future__ import annotations

import itertools
from typing import Any

from tests.conftest import ADMIN_TOKEN

_txn = itertools.count(1)
CUSTOMER = {"Authorization": "Bearer user123"}
STAFF = {"Authorization": "Bearer staff123"}
OPERATOR = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def txn_id(prefix: str = "MOCK") -> str:
    """A gateway transaction id not used before in this test run."""
    return f"{prefix}-{next(_txn):06d}"


def place_order(client: Any, *, items: list[tuple[int, int]] | None = None,
                headers: dict[str, str] | None = None) -> dict[str, Any]:
    """POST /orders as the demo customer; asserts success and returns the order."""
    items = items or [(101, 1)]
    response = client.post("/orders", headers=headers or CUSTOMER,
                           json={"items": [{"product_id": p, "quantity": q} for p, q in items]})
    assert response.status_code == 200, response.text
    return response.json()


def notify(client: Any, *, order: dict[str, Any], txn: str, status: str = "SUCCESS",
           amount: int | None = None, headers: dict[str, str] | None = None) -> Any:
    """POST /payments/notify for `order`; returns the raw response."""
    body = {"order_id": order["order_id"], "gateway_txn_id": txn, "status": status,
            "amount": order["total_amount"] if amount is None else amount}
    return client.post("/payments/notify", json=body, headers=headers or {})


def product(client: Any, product_id: int = 101, tenant: str = "default") -> dict[str, Any]:
    """The operator's view of a product (stock, reserved, sold)."""
    response = client.get(f"/admin/tenants/{tenant}/products/{product_id}", headers=OPERATOR)
    assert response.status_code == 200, response.text
    return response.json()
