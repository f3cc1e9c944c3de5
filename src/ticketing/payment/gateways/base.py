"""What every payment gateway adapter offers; only the payment service uses them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class PaymentNotice:
    """A verified notification, in gateway-neutral terms."""

    gateway: str
    event_type: str
    gateway_txn_id: str
    status: str  # SUCCESS, FAILED or CLOSED
    amount: int
    order_id: int | None = None
    out_trade_no: str | None = None
    paid_at: datetime | None = None
    trade_state: str | None = None


@dataclass(frozen=True)
class Received:
    """A notification as it arrived, kept verbatim for the operator."""

    gateway: str
    body: str
    headers: dict[str, str]
    verification: str
    event_type: str = "payment"


@dataclass(frozen=True)
class OrderSnapshot:
    """What a gateway needs to know about an order to charge or refund it."""

    tenant_id: int
    tenant_slug: str
    order_id: int
    out_trade_no: str
    total_amount: int
    currency: str
    description: str
    transaction_id: str | None = None


@dataclass(frozen=True)
class RefundRequest:
    order: OrderSnapshot
    out_refund_no: str
    amount: int
    gateway_txn_id: str


@dataclass
class RefundResult:
    status: str  # SUCCESS (done now) or PROCESSING (a notification will follow)
    gateway_refund_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


class Gateway(Protocol):
    """A payment gateway adapter, configured for one tenant."""

    name: str

    def start_payment(self, order: OrderSnapshot, payer: dict[str, Any]) -> dict[str, Any]:
        """Place the payment with the gateway; what the client needs to pay."""
        ...

    def refund(self, request: RefundRequest) -> RefundResult:
        """Ask the gateway to return the money."""
        ...
