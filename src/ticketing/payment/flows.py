"""Use cases that span a gateway call and the database.

Each step is its own transaction and gateway calls happen between them, never
inside one: a slow gateway must not hold row locks, and nothing is promised to the
gateway or the customer before it is committed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ticketing.db import Database
from ticketing.kit.errors import GatewayError, Invalid, TicketingError
from ticketing.kit.sql import Pipeline
from ticketing.notification import service as notifications
from ticketing.order import service as orders
from ticketing.payment import gateways, service, success
from ticketing.payment.gateways import mock
from ticketing.payment.gateways.base import PaymentNotice, Received, RefundRequest
from ticketing.payment.repository import PaymentRepository
from ticketing.payment.service import NotifyResult
from ticketing.settings import Settings
from ticketing.tenant.repository import gateway_settings_in
from ticketing.tenant.service import authenticate, gateway_config, get_tenant

log = structlog.get_logger(component="payment")


def start_payment(db: Database, settings: Settings, slug: str, token: str | None,
                  order_id: int, gateway: str, payer: dict[str, Any]) -> dict[str, Any]:
    """Place the payment with the gateway, then mark the order as paying."""
    with db.transaction(readonly=True) as session:
        caller = authenticate(session, slug, token, "customer")
        order, description = service.payable_order(session, caller.tenant_id, order_id,
                                                    caller.user.id)
        adapter = gateways.build(gateway, gateway_config(session, caller.tenant_id, gateway),
                                 settings)
        snap = service.snapshot(order, slug, description)
    params = adapter.start_payment(snap, payer)
    with db.transaction() as session:
        service.mark_paying(session, caller.tenant_id, order_id, gateway)
    log.info("payment.started", tenant_id=caller.tenant_id, order_id=order_id, gateway=gateway)
    return {"order_id": order_id, "gateway": gateway, "payment_status": 1, **params}


class NoticeFailure(Exception):
    """Applying a verified notice failed; carries what is needed to keep it and answer."""

    def __init__(self, tenant_id: int, received: Received, notice: PaymentNotice,
                 *, raced: bool) -> None:
        super().__init__(f"notification {notice.gateway_txn_id} failed")
        self.tenant_id, self.received, self.notice, self.raced = tenant_id, received, notice, raced


def apply_guarded(session: Session, tenant_id: int, notice: PaymentNotice,
                  received: Received) -> NotifyResult:
    """`handle_notice`, with any failure turned into a NoticeFailure for `in_transaction`.

    The common case, a first-seen SUCCESS for a pending order, is applied by
    `success.apply_successes` in two round trips and the transaction ends with them
    (`session` must have nothing else to do then); whatever it leaves (a duplicate,
    a conflict, a closed order) `handle_notice` answers, in the same transaction.
    """
    try:
        if success.is_success(notice):
            context = structlog.contextvars.get_contextvars()
            applied = success.apply_successes(session, Pipeline(session), [
                success.Success(0, context, tenant_id, notice, received)], commit=True)
            if applied:
                return applied[0]
        return service.handle_notice(session, tenant_id, notice, received)
    except IntegrityError as exc:
        raise NoticeFailure(tenant_id, received, notice, raced=True) from exc
    except Exception as exc:
        raise NoticeFailure(tenant_id, received, notice, raced=False) from exc


def in_transaction(db: Database, work: Callable[[Session], NotifyResult]) -> NotifyResult:
    """Run `work` in one transaction and answer for it.

    A unique-key race rolls the loser back whole and runs it once more (it then finds
    the winner's row). Any other failure rolls back, keeps the notification with
    outcome `error` in a transaction of its own, and answers 500 so the gateway retries.
    """
    for attempt in (1, 2):
        try:
            with db.transaction() as session:
                return work(session)
        except NoticeFailure as failure:
            if failure.raced and attempt == 1:
                log.info("notification.raced", gateway_txn_id=failure.notice.gateway_txn_id)
                continue
            return failed(db, failure.tenant_id, failure.received, failure.notice,
                          failure.__cause__ or failure)
    raise AssertionError("unreachable")


def record_only(db: Database, tenant_id: int, received: Received, outcome: str,
                http_status: int, detail: str, notice: PaymentNotice | None = None) -> int | None:
    """Keep a notification that was not applied; never raises (the answer matters more)."""
    try:
        with db.transaction() as session:
            return notifications.record(session, tenant_id, received, outcome=outcome,
                                        http_status=http_status, notice=notice,
                                        detail=detail[:2000])
    except Exception:  # the database may be what failed
        log.exception("notification.record_failed", tenant_id=tenant_id, outcome=outcome)
        return None


def failed(db: Database, tenant_id: int | None, received: Received, notice: PaymentNotice | None,
           exc: Exception) -> NotifyResult:
    """After an unexpected failure (already rolled back): keep the notification, answer 500."""
    log.error("notification.failed", tenant_id=tenant_id,
              gateway_txn_id=notice.gateway_txn_id if notice else None,
              error=f"{type(exc).__name__}: {exc}", exc_info=exc)
    nid = None
    if tenant_id is not None:
        nid = record_only(db, tenant_id, received, "error", 500, f"{type(exc).__name__}: {exc}",
                          notice)
    body = {"status": "error", "error": "Notification could not be processed; send it again",
            "code": "internal_error"}
    return NotifyResult(500, body, "error", notice.order_id if notice else None, nid)


def failed_unverified(db: Database, slug: str, received: Received, notice: PaymentNotice | None,
                      exc: Exception) -> NotifyResult:
    """A failure outside `handle_notice` (a lookup before verification, or the commit).

    The notification is kept with outcome `error` and verification `unverified`, like a
    failure in the middle, so the gateway's retry is not the only trace of it.
    """
    tenant_id = None
    try:
        with db.transaction(readonly=True) as session:
            tenant_id = get_tenant(session, slug).id
    except Exception:  # the database may still be down; the answer matters more
        log.exception("notification.tenant_lookup_failed", tenant=slug)
    return failed(db, tenant_id, received, notice, exc)


def mock_notice(raw: bytes) -> PaymentNotice:
    """The notice a mock notification's body states; Invalid (422) if malformed."""
    from pydantic import ValidationError

    from ticketing.api.errors import validation_body
    from ticketing.payment.schemas import MockNotifyIn

    try:
        data = MockNotifyIn.model_validate_json(raw)
    except ValidationError as exc:
        body = validation_body(list(exc.errors()))
        raise Invalid(body["error"], code=body["code"], status="error") from exc
    return PaymentNotice(gateway=mock.NAME, event_type="payment", gateway_txn_id=data.gateway_txn_id,
                         status=data.status, amount=data.amount, order_id=data.order_id)


def queue_mock_secrets(pipeline: Pipeline,
                       tenant_ids: set[int]) -> Callable[[], dict[int, str | None]]:
    """Queue the read of each tenant's mock-gateway secret; what reads them once the
    pipeline is flushed."""
    queued = {tenant_id: gateway_settings_in(pipeline, tenant_id, mock.NAME)
              for tenant_id in sorted(tenant_ids)}
    return lambda: {tenant_id: mock.secret_of(q.rows[0] if q.rows else None)
                    for tenant_id, q in queued.items()}


def mock_secrets(pipeline: Pipeline, tenant_ids: set[int]) -> dict[int, str | None]:
    """Each tenant's mock-gateway secret, read in one round trip."""
    secrets = queue_mock_secrets(pipeline, tenant_ids)
    pipeline.flush()
    return secrets()


def _mock_in_tx(session: Session, slug: str, raw: bytes, headers: Any) -> NotifyResult:
    """Verify, parse and apply one mock notification inside the caller's transaction."""
    tenant = get_tenant(session, slug)
    structlog.contextvars.bind_contextvars(tenant_id=tenant.id)
    # queued, so that on PostgreSQL the transaction's BEGIN goes out with it (kit.pgpipe)
    secret = mock_secrets(Pipeline(session), {tenant.id})[tenant.id]
    verification = mock.verify(secret, raw, headers.get("x-mock-signature"))
    received = Received(gateway=mock.NAME, body=raw.decode("utf-8", "replace"),
                        headers=notifications.kept_headers(headers), verification=verification)
    if verification == "failed":
        return rejected(session, tenant.id, received, 401, "bad X-Mock-Signature",
                         {"status": "error", "error": "Invalid signature", "code": "bad_signature"})
    try:
        notice = mock_notice(raw)
    except Invalid as exc:
        return rejected(session, tenant.id, received, 422, exc.message, exc.body())
    log.info("notification.received", tenant_id=tenant.id, order_id=notice.order_id,
             verification=verification)
    return apply_guarded(session, tenant.id, notice, received)


def rejected(session: Session, tenant_id: int, received: Received, status: int, detail: str,
             body: dict[str, Any]) -> NotifyResult:
    """Keep a notification that failed verification or parsing, and answer `status`."""
    nid = notifications.record(session, tenant_id, received, outcome="rejected",
                               http_status=status, detail=detail)
    return NotifyResult(status, body, "rejected", None, nid)


def notify_mock(db: Database, slug: str, raw: bytes, headers: Any) -> NotifyResult:
    """Verify and apply a mock-gateway notification: one transaction on the happy path."""
    try:
        return in_transaction(db, lambda session: _mock_in_tx(session, slug, raw, headers))
    except TicketingError:
        raise
    except Exception as exc:  # before verification, or at commit: never lose it silently
        received = Received(gateway=mock.NAME, body=raw.decode("utf-8", "replace"),
                            headers=notifications.kept_headers(headers), verification="unverified")
        try:
            notice: PaymentNotice | None = mock_notice(raw)
        except Invalid:
            notice = None
        return failed_unverified(db, slug, received, notice, exc)


def refund_order(db: Database, settings: Settings, slug: str, order_id: int) -> dict[str, Any]:
    """Operator refund: record it, ask the gateway, apply what it answered."""
    with db.transaction() as session:
        tenant = get_tenant(session, slug)
        order, txn = service.refundable(session, tenant.id, order_id)
        gateway_name = txn.gateway
        adapter = gateways.build(gateway_name, gateway_config(session, tenant.id, gateway_name),
                                 settings)
        refund = service.new_refund(session, order, txn, gateway_name)
        request = RefundRequest(order=service.snapshot(order, slug, "refund"),
                                out_refund_no=refund.out_refund_no, amount=refund.amount,
                                gateway_txn_id=txn.gateway_txn_id)
    try:
        result = adapter.refund(request)
    except TicketingError:
        _set_refund_status(db, tenant.id, refund.out_refund_no, "FAILED", None)
        raise
    except Exception as exc:
        _set_refund_status(db, tenant.id, refund.out_refund_no, "FAILED", None)
        raise GatewayError(f"Gateway refund failed: {exc}") from exc
    _set_refund_status(db, tenant.id, refund.out_refund_no, result.status, result.gateway_refund_id)
    with db.transaction(readonly=True) as session:
        view = orders.get_order(session, tenant.id, order_id)
    view["refund"] = {"out_refund_no": refund.out_refund_no, "status": result.status,
                      "amount": refund.amount, "gateway_refund_id": result.gateway_refund_id}
    return view


def _set_refund_status(db: Database, tenant_id: int, out_refund_no: str, status: str,
                       gateway_refund_id: str | None) -> None:
    with db.transaction() as session:
        refund = PaymentRepository(session, tenant_id).refund_by_no(out_refund_no, lock=True)
        assert refund is not None
        service.complete_refund(session, tenant_id, refund, status, gateway_refund_id)
