"""The mock gateway: a product feature for demos and QA, not a test double.

It pays nothing and refunds at once. Its notifications are plain JSON; when the
tenant has set a secret, each must carry `X-Mock-Signature`, the hex HMAC-SHA256 of
the raw body under that secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any

from ticketing.payment.gateways.base import OrderSnapshot, RefundRequest, RefundResult

NAME = "mock"


def secret_of(row: Any | None) -> str | None:
    """The notification secret in a tenant's stored mock-gateway settings (a row with
    `secrets`), if it has settings and a secret."""
    return (row.secrets or {}).get("secret") if row is not None else None


def sign(secret: str, body: bytes) -> str:
    """The signature a notification body must carry under `secret`."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str | None, body: bytes, signature: str | None) -> str:
    """`not_required`, `verified` or `failed` for this body and header."""
    if not secret:
        return "not_required"
    if signature and hmac.compare_digest(sign(secret, body), signature.strip().lower()):
        return "verified"
    return "failed"


class MockGateway:
    """Mock payments for one tenant."""

    name = NAME

    def __init__(self, secret: str | None = None) -> None:
        self._secret = secret

    def start_payment(self, order: OrderSnapshot, payer: dict[str, Any]) -> dict[str, Any]:
        """The notification that would confirm this payment, ready to send."""
        body = {
            "order_id": order.order_id,
            "gateway_txn_id": "MOCK-" + secrets.token_hex(8).upper(),
            "status": "SUCCESS",
            "amount": order.total_amount,
        }
        headers = {"Content-Type": "application/json", "X-Tenant-ID": order.tenant_slug}
        if self._secret:
            raw = json.dumps(body, separators=(",", ":")).encode()
            headers["X-Mock-Signature"] = sign(self._secret, raw)
            return {"notify": {"method": "POST", "path": "/payments/notify", "headers": headers,
                               "raw_body": raw.decode(), "body": body}}
        return {"notify": {"method": "POST", "path": "/payments/notify", "headers": headers,
                           "body": body}}

    def refund(self, request: RefundRequest) -> RefundResult:
        """Refunds complete at once."""
        return RefundResult(status="SUCCESS", gateway_refund_id="MOCKREFUND-" + secrets.token_hex(6).upper())
