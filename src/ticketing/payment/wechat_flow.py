"""WeChat Pay API v3 notifications: verify, decrypt, check the merchant, apply once.

`POST /tenants/{slug}/payments/wechat/notify`, in one transaction on the happy path:
tenant -> its WeChat Pay settings -> signature (Wechatpay-* headers over the raw body)
-> envelope -> AEAD_AES_256_GCM resource under the tenant's APIv3 key -> the resource
names this tenant's merchant -> payment (`service.handle_notice`, the exactly-once
core) or refund (`service.complete_refund`) -> the notification is recorded.
No network call on this path: WeChat Pay waits 5 seconds for the answer.

Answers: 204 with no body when handled (WeChat Pay stops sending), otherwise 4xx/5xx
with `{"code": "FAIL", "message": ...}` so WeChat Pay sends it again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import structlog
from sqlalchemy.orm import Session

from ticketing.db import Database
from ticketing.kit.clock import utcnow
from ticketing.notification import service as notifications
from ticketing.order.repository import OrderRepository
from ticketing.payment import flows
from ticketing.payment.gateways.base import PaymentNotice, Received
from ticketing.payment.gateways.wechat import crypto, resource
from ticketing.payment.gateways.wechat.config import NAME, WechatConfig
from ticketing.payment.service import NotifyResult
from ticketing.payment.wechat_refunds import apply_refund
from ticketing.tenant.service import find_tenant, gateway_config

log = structlog.get_logger(component="wechat")

# Outcomes WeChat Pay must not send again: answered 204 with no body.
HANDLED = frozenset({"processed", "failed", "closed", "ignored", "replayed", "needs_refund"})
# trade_state -> the gateway-neutral status `handle_notice` applies; others change nothing.
TRADE_STATUS = {"SUCCESS": "SUCCESS", "PAYERROR": "FAILED", "CLOSED": "CLOSED",
                "REVOKED": "CLOSED"}


class Refused(Exception):
    """A notification refused before it reaches an order: HTTP status, reason code, why."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


def fail_body(message: str) -> dict[str, str]:
    """The body WeChat Pay expects with a failure answer."""
    return {"code": "FAIL", "message": message}


def answer(result: NotifyResult) -> tuple[int, dict[str, str] | None]:
    """(HTTP status, body) for WeChat Pay: 204 and no body when handled, else FAIL."""
    if result.outcome in HANDLED:
        return 204, None
    message = result.body.get("message") or result.body.get("error") or result.outcome
    status = result.http_status if result.http_status >= 400 else 500
    return status, fail_body(str(message))


def notify_wechat(db: Database, slug: str, raw: bytes, headers: Mapping[str, str]
                  ) -> NotifyResult:
    """Verify and apply one WeChat Pay notification for tenant `slug`."""
    received = Received(gateway=NAME, body=raw.decode("utf-8", "replace"),
                        headers=notifications.kept_headers(headers), verification="unverified",
                        event_type=_peek_event_type(raw))
    log.info("wechat.notification.received", tenant=slug, event_type=received.event_type,
             serial_no=headers.get("wechatpay-serial"), size=len(raw))
    try:
        result = flows.in_transaction(db, lambda s: _in_transaction(s, slug, raw, headers,
                                                                    received))
    except Exception as exc:  # before verification, or at commit: keep it, answer 500
        result = flows.failed_unverified(db, slug, received, None, exc)
    status, _body = answer(result)
    log.info("wechat.notification.answered", tenant=slug, order_id=result.order_id,
             outcome=result.outcome, http_status=status,
             notification_id=result.notification_id)
    return result


def _peek_event_type(raw: bytes) -> str:
    """The envelope's event type, for the record only (it is not trusted before the check)."""
    try:
        value = json.loads(raw).get("event_type")
    except (ValueError, AttributeError):
        return "unknown"
    return value[:48] if isinstance(value, str) and value else "unknown"


def _in_transaction(session: Session, slug: str, raw: bytes, headers: Mapping[str, str],
                    received: Received) -> NotifyResult:
    tenant = find_tenant(session, slug)
    if tenant is None:  # nothing to record it under
        log.warning("wechat.notification.unknown_tenant", tenant=slug)
        return NotifyResult(404, fail_body("Unknown merchant"), "not_found")
    structlog.contextvars.bind_contextvars(tenant_id=tenant.id)
    try:
        event_type, plain = _open(session, tenant.id, raw, headers)
        received = replace(received, verification="verified", event_type=event_type[:48])
        if event_type.startswith("REFUND."):
            return apply_refund(session, tenant.id, event_type, plain, received)
        if event_type.startswith("TRANSACTION."):
            return _apply_transaction(session, tenant.id, event_type, plain, received)
    except resource.ResourceError as exc:
        return _refuse(session, tenant.id, received, Refused(400, exc.reason_code, str(exc)))
    except Refused as exc:
        return _refuse(session, tenant.id, received, exc)
    return _ignore(session, tenant.id, received, None, f"event {event_type} is not handled")


def _refuse(session: Session, tenant_id: int, received: Received, exc: Refused) -> NotifyResult:
    """Keep a notification that failed a check (outcome `rejected`) and answer FAIL."""
    log.warning("wechat.notification.rejected", tenant_id=tenant_id, reason=exc.reason,
                http_status=exc.status)
    failed = replace(received, verification=f"failed:{exc.reason}"[:32])
    return flows.rejected(session, tenant_id, failed, exc.status, exc.message,
                           fail_body(exc.message))


def _open(session: Session, tenant_id: int, raw: bytes, headers: Mapping[str, str]
          ) -> tuple[str, dict[str, Any]]:
    """(event type, decrypted resource) of a notification that is this tenant's; or Refused."""
    row = gateway_config(session, tenant_id, NAME)
    if row is None or not (row.secrets or {}).get("apiv3_key"):
        raise Refused(404, "not_configured", "WeChat Pay is not configured for this merchant")
    config = WechatConfig.from_row(row)
    now = utcnow()
    try:
        crypto.verify_notification(headers, raw, config.verification_keys(now), now)
    except crypto.WechatVerificationError as exc:
        raise Refused(401, exc.reason_code, exc.message) from exc
    log.info("wechat.notification.verified", tenant_id=tenant_id,
             serial_no=headers.get("wechatpay-serial"))
    envelope = _envelope(raw)
    try:
        plain = crypto.decrypt_resource(envelope["resource"], config.apiv3_key)
    except crypto.WechatDecryptError as exc:
        raise Refused(400, exc.reason_code, exc.message) from exc
    event_type = envelope["event_type"]
    log.info("wechat.notification.decrypted", tenant_id=tenant_id, event_type=event_type,
             out_trade_no=plain.get("out_trade_no"),
             gateway_txn_id=plain.get("transaction_id") or plain.get("refund_id"))
    if not config.owns(plain, transaction=event_type.startswith("TRANSACTION.")):
        raise Refused(403, "wrong_merchant", "The notification names another merchant or app")
    return event_type, plain


def _envelope(raw: bytes) -> dict[str, Any]:
    try:
        envelope = json.loads(raw)
    except ValueError as exc:
        raise Refused(400, "bad_envelope", "Body is not JSON") from exc
    if not (isinstance(envelope, dict) and isinstance(envelope.get("event_type"), str)
            and envelope["event_type"] and isinstance(envelope.get("resource"), dict)):
        raise Refused(400, "bad_envelope", "Body has no event_type and resource")
    return envelope


def _apply_transaction(session: Session, tenant_id: int, event_type: str,
                       plain: Mapping[str, Any], received: Received) -> NotifyResult:
    """A payment result: SUCCESS pays, PAYERROR fails, CLOSED/REVOKED close, others wait."""
    out_trade_no = resource.text(plain, "out_trade_no", 32)
    trade_state = resource.text(plain, "trade_state", 32)
    status = TRADE_STATUS.get(trade_state or "")
    transaction_id = resource.text(plain, "transaction_id", 64, required=status == "SUCCESS")
    paid_at = resource.moment(plain, "success_time") if status == "SUCCESS" else None
    if status == "SUCCESS" and paid_at is None:  # the order then takes the time applied
        log.warning("wechat.notification.no_success_time", tenant_id=tenant_id)
    notice = PaymentNotice(
        gateway=NAME, event_type=event_type[:48],
        # a failed or closed payment may have no transaction id; its state then names it
        gateway_txn_id=transaction_id or f"{out_trade_no}:{trade_state}",
        status=status or str(trade_state),
        amount=resource.amount(plain, "total", required=status is not None) or 0,
        out_trade_no=out_trade_no, paid_at=paid_at, trade_state=trade_state)
    if status is None:  # NOTPAY, USERPAYING, REFUND (refunds come as REFUND.* events)
        return _ignore(session, tenant_id, received, notice,
                       f"trade_state {trade_state}: nothing to apply")
    return flows.apply_guarded(session, tenant_id, notice, received)


def _ignore(session: Session, tenant_id: int, received: Received, notice: PaymentNotice | None,
            why: str) -> NotifyResult:
    """Keep a valid notification that changes nothing; WeChat Pay need not send it again."""
    order = None
    if notice is not None and notice.out_trade_no:
        order = OrderRepository(session, tenant_id).by_out_trade_no(notice.out_trade_no)
    order_id = order.id if order is not None else None
    nid = notifications.record(session, tenant_id, received, outcome="ignored", http_status=200,
                               notice=notice, order_id=order_id, detail=why)
    log.info("wechat.notification.ignored", tenant_id=tenant_id, order_id=order_id, why=why)
    return NotifyResult(200, {"status": "ignored", "error": why}, "ignored", order_id, nid)
