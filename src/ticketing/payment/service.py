"""Applying payment notifications exactly once, starting payments, refunding.

The notification path, in one transaction:
  lock the order -> look up the gateway transaction -> (replay | conflict | apply)
  -> insert the transaction row -> record the notification -> commit.
The order lock serialises notifications for one order, so a duplicate waits and
then finds the first one's transaction row. UNIQUE (tenant, gateway, txn id) is the
guarantee underneath: if two notifications for different orders race with one txn
id, the loser's insert fails, its transaction rolls back whole, and the entry point
runs it again, when it finds the winner's row and answers 409.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy.orm import Session

from ticketing.kit.clock import utcnow
from ticketing.kit.errors import Conflict, Invalid, NotFound
from ticketing.kit.faults import fault_point
from ticketing.models import Order, PaymentTransaction, Refund
from ticketing.notification import service as notifications
from ticketing.order import service as orders
from ticketing.order.repository import OrderRepository
from ticketing.order.state import PENDING_STATES, PayState, is_allowed
from ticketing.payment.gateways.base import OrderSnapshot, PaymentNotice, Received
from ticketing.payment.repository import PaymentRepository

log = structlog.get_logger(component="payment")

TARGET_STATE = {"SUCCESS": PayState.PAID, "FAILED": PayState.FAILED, "CLOSED": PayState.CLOSED}


@dataclass
class NotifyResult:
    """The answer to a notification and what became of it."""

    http_status: int
    body: dict[str, Any]
    outcome: str
    order_id: int | None = None
    notification_id: int | None = None


def _locate(repo: OrderRepository, notice: PaymentNotice) -> Order | None:
    if notice.order_id is not None:
        return repo.by_id(notice.order_id, lock=True)
    if notice.out_trade_no is not None:
        return repo.by_out_trade_no(notice.out_trade_no, lock=True)
    return None


def _replay_or_conflict(prior: PaymentTransaction, notice: PaymentNotice, order: Order) -> NotifyResult:
    same = (prior.order_id, prior.amount, prior.status) == (order.id, notice.amount, notice.status)
    if same:
        return NotifyResult(200, {**prior.response, "replayed": True}, "replayed", order.id)
    return _conflict(order.id, "gateway_txn_id already recorded with another order, amount or status")


def _conflict(order_id: int | None, why: str) -> NotifyResult:
    body = {"status": "conflict", "error": why, "code": "notification_conflict",
            "order_id": order_id}
    return NotifyResult(409, body, "conflict", order_id)


def notice_reason(notice: PaymentNotice) -> str:
    """Why an order's state changed, as its order event says it."""
    return f"{notice.gateway} {notice.gateway_txn_id} {notice.status}"


def processed_body(order_id: int, order_status: str, issued: list[dict[str, Any]]) -> dict[str, Any]:
    """The answer to an applied SUCCESS notification (replayed to its duplicates)."""
    return {"status": "processed", "order_id": order_id, "order_status": order_status,
            "tickets_issued": issued}


def txn_row(tenant_id: int, notice: PaymentNotice, order_id: int, outcome: str, applied: bool,
            body: dict[str, Any]) -> dict[str, Any]:
    """The stored form of a first-seen gateway transaction."""
    return {"tenant_id": tenant_id, "gateway": notice.gateway,
            "gateway_txn_id": notice.gateway_txn_id, "order_id": order_id,
            "amount": notice.amount, "status": notice.status, "outcome": outcome,
            "applied": applied, "refunded": False, "response": body, "created_at": utcnow()}


def _apply(session: Session, tenant_id: int, order: Order, notice: PaymentNotice) -> NotifyResult:
    """Apply a first-seen notification to its (locked) order."""
    fault_point("payment.before_apply")
    target = TARGET_STATE[notice.status]
    outcome, applied, detail = "processed", False, ""
    try:
        result = orders.update_order_payment_status(
            session, tenant_id, order.id, target, order=order,
            reason=notice_reason(notice),
            gateway=notice.gateway, transaction_id=notice.gateway_txn_id, paid_at=notice.paid_at,
        )
    except orders.StockGone as exc:
        result, detail = orders.Transition(False, order, PayState(order.payment_status)), exc.message
    body: dict[str, Any] = {"order_id": order.id, "order_status": order.status}
    if target == PayState.PAID:
        if result.accepted:
            applied = True
            body = processed_body(order.id, order.status, result.tickets_issued)
        else:
            outcome = "needs_refund"
            detail = detail or f"payment for an order already {order.status}"
            orders.flag_for_refund(session, order, f"{notice.gateway_txn_id}: {detail}")
            body = {"status": "needs_refund", **body, "tickets_issued": [], "error": detail}
    elif result.accepted:
        outcome = "failed" if target == PayState.FAILED else "closed"
        body = {"status": outcome, **body}
        if outcome == "failed":
            body["error"] = "Payment failed"
    else:
        outcome, detail = "ignored", result.reason
        body = {"status": "ignored", **body, "error": result.reason}
    PaymentRepository.add_txns(session, [txn_row(tenant_id, notice, order.id, outcome, applied,
                                                 body)])
    return NotifyResult(200, body, outcome, order.id)


def handle_notice(session: Session, tenant_id: int, notice: PaymentNotice, received: Received) -> NotifyResult:
    """Apply a verified payment notification exactly once and record it."""
    structlog.contextvars.bind_contextvars(gateway_txn_id=notice.gateway_txn_id)
    order = _locate(OrderRepository(session, tenant_id), notice)
    if order is None:
        result = NotifyResult(404, {"status": "error", "error": "Order not found",
                                    "code": "order_not_found"}, "not_found")
    else:
        structlog.contextvars.bind_contextvars(order_id=order.id)
        prior = PaymentRepository(session, tenant_id).txn(notice.gateway, notice.gateway_txn_id)
        if prior is not None:
            result = _replay_or_conflict(prior, notice, order)
        elif notice.amount != order.total_amount:
            result = _conflict(order.id, f"amount {notice.amount} is not the order total "
                                         f"{order.total_amount}")
        else:
            result = _apply(session, tenant_id, order, notice)
    fault_point("payment.before_record")
    result.notification_id = notifications.record(
        session, tenant_id, received, outcome=result.outcome, http_status=result.http_status,
        notice=notice, order_id=result.order_id, detail=result.body.get("error"),
    )
    structlog.contextvars.bind_contextvars(notification_id=result.notification_id)
    log.info("notification.handled", tenant_id=tenant_id, outcome=result.outcome,
             http_status=result.http_status)
    return result


def snapshot(order: Order, tenant_slug: str, description: str) -> OrderSnapshot:
    """What a gateway is told about an order."""
    return OrderSnapshot(
        tenant_id=order.tenant_id, tenant_slug=tenant_slug, order_id=order.id,
        out_trade_no=order.out_trade_no, total_amount=order.total_amount,
        currency=order.currency, description=description, transaction_id=order.transaction_id,
    )


def payable_order(session: Session, tenant_id: int, order_id: int, owner_id: int) -> tuple[Order, str]:
    """The caller's order if it can be paid now, with a description for the gateway."""
    repo = OrderRepository(session, tenant_id)
    order = repo.by_id(order_id)
    if order is None or order.user_id != owner_id:
        raise NotFound("Order not found", code="order_not_found")
    if PayState(order.payment_status) not in PENDING_STATES or order.expires_at <= utcnow():
        raise Conflict(f"Order is {order.status} and cannot be paid", code="order_not_payable")
    items = repo.items(order.id)
    description = ", ".join(f"{i.product_name} x{i.quantity}" for i in items)[:127]
    return order, description


def mark_paying(session: Session, tenant_id: int, order_id: int, gateway: str) -> Order:
    """Record that a payment was started (payment_status 1)."""
    result = orders.update_order_payment_status(
        session, tenant_id, order_id, PayState.PAYING, reason=f"{gateway} payment started",
        gateway=gateway,
    )
    if not result.accepted or result.order is None:
        raise Conflict("Order can no longer be paid", code="order_not_payable")
    return result.order


def refundable(session: Session, tenant_id: int, order_id: int) -> tuple[Order, PaymentTransaction]:
    """The order and the payment an operator refund would return; 409 if none."""
    order = OrderRepository(session, tenant_id).by_id(order_id, lock=True)
    if order is None:
        raise NotFound("Order not found", code="order_not_found")
    txns = [t for t in PaymentRepository(session, tenant_id).txns_for_order(order.id)
            if t.status == "SUCCESS" and not t.refunded]
    paid = [t for t in txns if t.applied]
    if paid and is_allowed(PayState(order.payment_status), PayState.REFUNDED):
        return order, paid[0]
    extra = [t for t in txns if not t.applied]
    if extra:  # money recorded for an order that could not be honoured
        return order, extra[0]
    raise Conflict(f"Order is {order.status} with no payment to refund", code="not_refundable")


def new_refund(session: Session, order: Order, txn: PaymentTransaction, gateway: str,
               out_refund_no: str | None = None) -> Refund:
    """Record a refund request before the gateway is asked (or one the gateway reported)."""
    now = utcnow()
    refund = Refund(
        tenant_id=order.tenant_id, order_id=order.id, payment_transaction_id=txn.id,
        gateway=gateway,
        out_refund_no=out_refund_no or "RF" + now.strftime("%Y%m%d%H%M%S") + secrets.token_hex(6).upper(),
        amount=txn.amount, status="PROCESSING", created_at=now, updated_at=now,
    )
    session.add(refund)
    session.flush()
    return refund


def _money_still_owed(repo: PaymentRepository, order_id: int, *, txn_pk: int) -> bool:
    """Whether the order holds another unapplied payment not yet refunded."""
    return any(t.id != txn_pk and t.status == "SUCCESS" and not t.applied and not t.refunded
               for t in repo.txns_for_order(order_id))


def complete_refund(session: Session, tenant_id: int, refund: Refund, status: str,
                    gateway_refund_id: str | None) -> Order:
    """Apply a refund's final status: SUCCESS returns stock and voids tickets."""
    if status not in ("SUCCESS", "ABNORMAL", "CLOSED", "PROCESSING", "FAILED"):
        raise Invalid(f"unknown refund status {status}", code="bad_refund_status")
    order = OrderRepository(session, tenant_id).by_id(refund.order_id, lock=True)
    assert order is not None
    already = refund.status == "SUCCESS"
    refund.status = status if not already else refund.status
    refund.gateway_refund_id = gateway_refund_id or refund.gateway_refund_id
    refund.updated_at = utcnow()
    if status == "SUCCESS" and not already:
        repo = PaymentRepository(session, tenant_id)
        txn = session.get(PaymentTransaction, refund.payment_transaction_id)
        repo.mark_refunded(refund.payment_transaction_id)
        if txn is not None and txn.applied:
            orders.update_order_payment_status(session, tenant_id, order.id, PayState.REFUNDED,
                                               reason=f"refund {refund.out_refund_no}")
        elif order.needs_refund and not _money_still_owed(repo, order.id,
                                                          txn_pk=refund.payment_transaction_id):
            orders.clear_refund_flag(session, order)
    session.flush()
    log.info("refund.updated", tenant_id=tenant_id, order_id=order.id, status=status,
             out_refund_no=refund.out_refund_no)
    return order
