"""Keeping every notification, and showing them to the operator."""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy.orm import Session

from ticketing.kit.clock import rfc3339, utcnow
from ticketing.kit.metrics import NOTIFICATIONS
from ticketing.models import Notification
from ticketing.notification.repository import NotificationRepository
from ticketing.payment.gateways.base import PaymentNotice, Received

OUTCOMES = (
    "processed",     # applied: the order changed state as the notification said
    "failed",        # a failed payment recorded; the order stays payable
    "closed",        # the gateway closed the payment; the order closed
    "ignored",       # valid but refused by the state machine (e.g. a failure after a success)
    "replayed",      # a duplicate of an applied notification; answered as the first time
    "conflict",      # contradicts what is recorded (txn id reused, wrong amount)
    "needs_refund",  # money arrived that cannot be honoured; order flagged for refund
    "rejected",      # failed verification (signature, timestamp, decryption, merchant)
    "not_found",     # names no order of this tenant
    "error",         # could not be processed; the gateway should retry
)

KEPT_HEADERS = ("content-type", "user-agent", "x-mock-signature", "x-request-id",
                "wechatpay-serial", "wechatpay-signature", "wechatpay-timestamp",
                "wechatpay-nonce", "wechatpay-signature-type", "request-id")


def kept_headers(headers: Any) -> dict[str, str]:
    """The headers worth keeping with a notification (never credentials)."""
    return {k: headers[k] for k in KEPT_HEADERS if k in headers}


def record(session: Session, tenant_id: int, received: Received, **fields: Any) -> int:
    """Store one notification with its outcome (`fields` as `notification_row` takes them);
    returns its id."""
    return NotificationRepository.add_many(session, [notification_row(tenant_id, received,
                                                                      **fields)])[0]


def notification_row(
    tenant_id: int,
    received: Received,
    *,
    outcome: str,
    http_status: int,
    notice: PaymentNotice | None = None,
    order_id: int | None = None,
    detail: str | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """The stored form of one notification (counted in the metrics as it is made)."""
    assert outcome in OUTCOMES, outcome
    NOTIFICATIONS.labels(received.gateway, outcome).inc()
    return {
        "tenant_id": tenant_id,
        "gateway": received.gateway,
        "event_type": notice.event_type if notice else received.event_type,
        "gateway_txn_id": notice.gateway_txn_id if notice else None,
        "order_id": order_id if order_id is not None else (notice.order_id if notice else None),
        "amount": notice.amount if notice else None,
        "trade_status": (notice.trade_state or notice.status) if notice else None,
        "verification": received.verification,
        "outcome": outcome,
        "http_status": http_status,
        "detail": detail,
        "headers": received.headers,
        "body": received.body,
        "request_id": request_id or structlog.contextvars.get_contextvars().get("request_id"),
        "received_at": utcnow(),
    }


def notification_view(n: Notification) -> dict[str, Any]:
    """The operator's JSON form of a notification."""
    return {
        "id": n.id, "gateway": n.gateway, "event_type": n.event_type,
        "gateway_txn_id": n.gateway_txn_id, "order_id": n.order_id, "amount": n.amount,
        "trade_status": n.trade_status, "verification": n.verification, "outcome": n.outcome,
        "http_status": n.http_status, "detail": n.detail, "headers": n.headers, "body": n.body,
        "request_id": n.request_id, "received_at": rfc3339(n.received_at),
    }


def list_notifications(session: Session, tenant_id: int, *, outcome: str | None = None,
                       order_id: int | None = None, limit: int = 100,
                       before_id: int | None = None) -> list[dict[str, Any]]:
    """Notifications of a tenant, newest first."""
    rows = NotificationRepository(session, tenant_id).latest(
        outcome=outcome, order_id=order_id, limit=limit, before_id=before_id)
    return [notification_view(n) for n in rows]
