"""WeChat Pay refund notifications (REFUND.SUCCESS, REFUND.ABNORMAL, REFUND.CLOSED).

A refund the operator started has a `refunds` row (found by `out_refund_no`); a refund
made in the WeChat Pay merchant platform has none, and gets one here from the order's
payment. REFUND.SUCCESS completes it once through `service.complete_refund` (order
REFUNDED, tickets void, stock back); ABNORMAL and CLOSED are kept on the refund only.

Locks are taken refund first, then order, as the operator's refund flow takes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ticketing.kit.errors import Conflict
from ticketing.models import Order, Refund
from ticketing.notification import service as notifications
from ticketing.order.repository import OrderRepository
from ticketing.payment import service
from ticketing.payment.flows import NoticeFailure
from ticketing.payment.gateways.base import PaymentNotice, Received
from ticketing.payment.gateways.wechat import resource
from ticketing.payment.gateways.wechat.config import NAME
from ticketing.payment.repository import PaymentRepository
from ticketing.payment.service import NotifyResult

log = structlog.get_logger(component="wechat")

REFUND_STATUS = {"REFUND.SUCCESS": "SUCCESS", "REFUND.ABNORMAL": "ABNORMAL",
                 "REFUND.CLOSED": "CLOSED"}


def apply_refund(session: Session, tenant_id: int, event_type: str, plain: Mapping[str, Any],
                 received: Received) -> NotifyResult:
    """Apply a verified refund notification once and record it."""
    status = REFUND_STATUS.get(event_type)
    notice = PaymentNotice(
        gateway=NAME, event_type=event_type[:48],
        gateway_txn_id=resource.text(plain, "refund_id", 64) or "",
        status=status or event_type[7:][:16], amount=resource.amount(plain, "refund") or 0,
        out_trade_no=resource.text(plain, "out_trade_no", 32),
        trade_state=resource.text(plain, "refund_status", 32, required=False) or status)
    out_refund_no = resource.text(plain, "out_refund_no", 64) or ""
    transaction_id = resource.text(plain, "transaction_id", 64, required=False)
    structlog.contextvars.bind_contextvars(gateway_txn_id=notice.gateway_txn_id)
    try:
        if status is None:
            result = NotifyResult(200, {"status": "ignored",
                                        "error": f"event {event_type} is not handled"}, "ignored")
        else:
            result = _apply(session, tenant_id, notice, out_refund_no, transaction_id)
        result.notification_id = notifications.record(
            session, tenant_id, received, outcome=result.outcome, http_status=result.http_status,
            notice=notice, order_id=result.order_id, detail=result.body.get("error"))
    except IntegrityError as exc:  # a racing twin inserted the refund row first: run again
        raise NoticeFailure(tenant_id, received, notice, raced=True) from exc
    except Exception as exc:
        raise NoticeFailure(tenant_id, received, notice, raced=False) from exc
    log.info("wechat.refund.handled", tenant_id=tenant_id, order_id=result.order_id,
             out_refund_no=out_refund_no, outcome=result.outcome)
    return result


def _conflict(order_id: int | None, why: str) -> NotifyResult:
    return NotifyResult(409, {"status": "conflict", "error": why, "code": "notification_conflict"},
                        "conflict", order_id)


def _apply(session: Session, tenant_id: int, notice: PaymentNotice, out_refund_no: str,
           transaction_id: str | None) -> NotifyResult:
    payments, orders = PaymentRepository(session, tenant_id), OrderRepository(session, tenant_id)
    refund = payments.refund_by_no(out_refund_no, lock=True)
    if refund is not None:
        order = orders.by_id(refund.order_id, lock=True)
    else:  # lock the order, then look again: a twin may have created the row meanwhile
        order = orders.by_out_trade_no(notice.out_trade_no or "", lock=True)
        refund = payments.refund_by_no(out_refund_no) if order is not None else None
    if order is None:
        return NotifyResult(404, {"status": "error", "error": "Order not found",
                                  "code": "order_not_found"}, "not_found")
    structlog.contextvars.bind_contextvars(order_id=order.id)
    log.info("wechat.refund.order_found", tenant_id=tenant_id, order_id=order.id,
             out_refund_no=out_refund_no, known=refund is not None)
    if order.out_trade_no != notice.out_trade_no:
        return _conflict(order.id, f"refund {out_refund_no} belongs to another order")
    try:
        if refund is None:
            refund = _refund_made_elsewhere(session, tenant_id, order, notice, out_refund_no,
                                            transaction_id)
        elif notice.amount != refund.amount:
            raise Conflict(f"refund amount {notice.amount} is not the refund's {refund.amount}")
    except Conflict as exc:
        return _conflict(order.id, exc.message)
    return _complete(session, tenant_id, order, refund, notice)


def _complete(session: Session, tenant_id: int, order: Order, refund: Refund,
              notice: PaymentNotice) -> NotifyResult:
    """Move the refund to the notified status, unless it is already there or done."""
    if refund.status in ("SUCCESS", notice.status):
        outcome = "replayed" if refund.status == notice.status else "ignored"
        why = None if outcome == "replayed" else f"refund already {refund.status}"
        body = {"status": outcome, "order_id": order.id, "order_status": order.status,
                "refund_status": refund.status, **({"error": why} if why else {})}
        return NotifyResult(200, body, outcome, order.id)
    if notice.status == "SUCCESS" and _refunded_elsewhere(session, tenant_id, refund):
        return _conflict(order.id, "the payment was already refunded by another refund")
    service.complete_refund(session, tenant_id, refund, notice.status, notice.gateway_txn_id)
    log.info("wechat.refund.state_changed", tenant_id=tenant_id, order_id=order.id,
             refund_status=refund.status, order_status=order.status)
    return NotifyResult(200, {"status": "processed", "order_id": order.id,
                              "order_status": order.status, "refund_status": refund.status},
                        "processed", order.id)


def _refunded_elsewhere(session: Session, tenant_id: int, refund: Refund) -> bool:
    """Whether the payment this refund returns was already returned by another refund."""
    txns = PaymentRepository(session, tenant_id).txns_for_order(refund.order_id)
    return any(t.id == refund.payment_transaction_id and t.refunded for t in txns)


def _refund_made_elsewhere(session: Session, tenant_id: int, order: Order,
                           notice: PaymentNotice, out_refund_no: str,
                           transaction_id: str | None) -> Refund:
    """A refund made in the merchant platform: record it against the payment it returns.

    Only whole payments are refunded here; anything else is a conflict for the operator.
    """
    txns = [t for t in PaymentRepository(session, tenant_id).txns_for_order(order.id)
            if t.status == "SUCCESS" and not t.refunded]
    txn = next((t for t in txns if t.gateway_txn_id == transaction_id), None)
    if txn is None:
        _order, txn = service.refundable(session, tenant_id, order.id)
    if txn.gateway != NAME:
        raise Conflict(f"the order was paid through {txn.gateway}, not WeChat Pay")
    if notice.amount != txn.amount:
        raise Conflict(f"refund amount {notice.amount} is not the payment's {txn.amount}")
    log.warning("wechat.refund.made_elsewhere", tenant_id=tenant_id, order_id=order.id,
                out_refund_no=out_refund_no, gateway_txn_id=txn.gateway_txn_id)
    return service.new_refund(session, order, txn, NAME, out_refund_no=out_refund_no)
