"""Mock-gateway notifications that arrive together are applied together.

A sale opening sends a worker process many payment notifications at once. They go
through a group commit (kit.batching): a batch applies them in one transaction,
one statement per table for all of them instead of one per table for each, and
one COMMIT; nobody is answered before it.

Only the common case is batched: a verified SUCCESS notification, first seen, for
a pending order of the same amount, with no other notification for that order or
transaction id in the batch. Everything else (a duplicate, a replay, a conflict, a
bad signature, a failure or closing, a closed or paid order, an unknown order) is
answered after the batch by the one-at-a-time path, `flows.notify_mock`, exactly as
if it had arrived alone. If anything in a batch fails, all of it rolls back and
every notification in it takes that path, which keeps it as `error` if it fails
again.

Exactly-once rests on the same guarantees as the one-at-a-time path: the batch
holds the row locks of all its orders (taken in id order, so batches never
deadlock), reads the recorded transactions after taking them, and UNIQUE (tenant,
gateway, txn id) refuses a second recording.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import structlog
from sqlalchemy.orm import Session

from ticketing.db import Database
from ticketing.kit.batching import Entry, GroupCommit
from ticketing.kit.clock import utcnow
from ticketing.kit.errors import Invalid
from ticketing.kit.faults import fault_point
from ticketing.kit.sql import Pipeline
from ticketing.notification.repository import NotificationRepository
from ticketing.notification.service import kept_headers, notification_row
from ticketing.order import service as orders
from ticketing.order.repository import OrderRepository
from ticketing.order.state import PENDING_STATES, PayState, order_status
from ticketing.payment import flows
from ticketing.payment.gateways import mock
from ticketing.payment.gateways.base import PaymentNotice, Received
from ticketing.payment.repository import PaymentRepository
from ticketing.payment.service import NotifyResult, notice_reason, processed_body, txn_row
from ticketing.tenant.repository import gateway_settings_in
from ticketing.tenant.service import find_tenant
from ticketing.ticket.repository import TicketRepository

log = structlog.get_logger(component="payment")


@dataclass(frozen=True)
class MockNotification:
    """A mock notification as its request brought it."""

    slug: str
    raw: bytes
    headers: Any


@dataclass
class _Candidate:
    index: int
    entry: Entry[MockNotification]
    tenant_id: int
    notice: PaymentNotice
    received: Received

    @property
    def order_key(self) -> tuple[int, int]:
        assert self.notice.order_id is not None
        return self.tenant_id, self.notice.order_id

    @property
    def txn_key(self) -> tuple[int, str, str]:
        return self.tenant_id, self.notice.gateway, self.notice.gateway_txn_id


def _secrets(pipeline: Pipeline, tenant_ids: set[int]) -> dict[int, str | None]:
    """Each tenant's mock-gateway secret, read in one round trip."""
    queued = {tenant_id: gateway_settings_in(pipeline, tenant_id, mock.NAME)
              for tenant_id in sorted(tenant_ids)}
    pipeline.flush()
    return {tenant_id: mock.secret_of(q.rows[0] if q.rows else None)
            for tenant_id, q in queued.items()}


def _candidates(session: Session, pipeline: Pipeline,
                batch: list[Entry[MockNotification]]) -> list[_Candidate]:
    """The verified first-seen SUCCESS notifications of the batch, one per order and txn."""
    tenants = [find_tenant(session, entry.value.slug) for entry in batch]
    secrets = _secrets(pipeline, {tenant.id for tenant in tenants if tenant is not None})
    seen: set[Any] = set()
    out = []
    for index, (entry, tenant) in enumerate(zip(batch, tenants, strict=True)):
        waiting = entry.value
        if tenant is None:
            continue
        verification = mock.verify(secrets[tenant.id], waiting.raw,
                                   waiting.headers.get("x-mock-signature"))
        if verification == "failed":
            continue
        try:
            notice = flows.mock_notice(waiting.raw)
        except Invalid:
            continue
        if notice.status != "SUCCESS" or notice.order_id is None:
            continue
        received = Received(gateway=mock.NAME, body=waiting.raw.decode("utf-8", "replace"),
                            headers=kept_headers(waiting.headers), verification=verification)
        candidate = _Candidate(index, entry, tenant.id, notice, received)
        if candidate.order_key in seen or candidate.txn_key in seen:
            continue
        seen.update((candidate.order_key, candidate.txn_key))
        out.append(candidate)
    return out


def apply_batch(session: Session, batch: list[Entry[MockNotification]]) -> dict[int, NotifyResult]:
    """Apply what can be applied together, in the caller's transaction; their answers
    by position in `batch` (valid once the transaction commits)."""
    # BEGIN, three round trips (secrets; locks and lookups; writes), COMMIT
    pipeline = Pipeline(session)
    candidates = _candidates(session, pipeline, batch)
    if len(candidates) < 2:
        return {}
    # the orders locked, then (each after the locks) what was recorded and their items
    lock = OrderRepository.lock_many(pipeline, [c.order_key for c in candidates])
    txns = PaymentRepository.txns_by_key(pipeline, [c.txn_key for c in candidates])
    items_of = OrderRepository.items_many(pipeline, [c.order_key for c in candidates])
    entitlements_of = TicketRepository.entitlements_of_orders(
        pipeline, [c.order_key for c in candidates])
    pipeline.flush()
    locked, recorded, items = lock(), txns(), items_of()
    ready = []
    for c in candidates:
        order = locked.get(c.order_key)
        if (order is not None and c.txn_key not in recorded
                and c.notice.amount == order.total_amount
                and PayState(order.payment_status) in PENDING_STATES):
            ready.append((c, order))
    if not ready:
        return {}
    fault_point("payment.before_apply")
    now = utcnow()
    issued = orders.pay_pending_orders(session, [
        (order, items.get(order.id, []), notice_reason(c.notice), c.notice.gateway,
         c.notice.gateway_txn_id, c.notice.paid_at) for c, order in ready], now, pipeline,
        entitlements_of())
    bodies = [processed_body(order.id, order_status(PayState.PAID), tickets)
              for (_, order), tickets in zip(ready, issued, strict=True)]
    PaymentRepository.add_txns(session, [
        txn_row(c.tenant_id, c.notice, order.id, "processed", True, body)
        for (c, order), body in zip(ready, bodies, strict=True)], pipeline)
    fault_point("payment.before_record")
    kept = NotificationRepository.queue_many(pipeline, [
        notification_row(c.tenant_id, c.received, outcome="processed", http_status=200,
                         notice=c.notice, order_id=order.id,
                         request_id=c.entry.context.get("request_id"))
        for c, order in ready])
    OrderRepository.queue_stock_moves(session, pipeline)  # the hot product rows, last
    pipeline.flush()
    ids = [row[0] for row in kept.rows]
    results = {}
    for (c, order), body, nid, tickets in zip(ready, bodies, ids, issued, strict=True):
        with structlog.contextvars.bound_contextvars(
                **c.entry.context, tenant_id=c.tenant_id, order_id=order.id,
                notification_id=nid, gateway_txn_id=c.notice.gateway_txn_id):
            log.info("notification.received", verification=c.received.verification)
            log.info("order.state_changed", from_state=int(order.payment_status),
                     to_state=int(PayState.PAID), tickets=len(tickets))
            log.info("notification.handled", outcome="processed", http_status=200, batched=True)
        results[c.index] = NotifyResult(200, body, "processed", order.id, nid)
    return results


_batchers: weakref.WeakKeyDictionary[Database, GroupCommit[MockNotification, NotifyResult]] = \
    weakref.WeakKeyDictionary()
_made = threading.Lock()


def _batcher(db: Database, max_size: int) -> GroupCommit[MockNotification, NotifyResult]:
    def alone(n: MockNotification) -> NotifyResult:
        return flows.notify_mock(db, n.slug, n.raw, n.headers)

    def together(batch: list[Entry[MockNotification]]) -> dict[int, NotifyResult]:
        with db.transaction() as session:
            return apply_batch(session, batch)

    return GroupCommit("notification", max_size, alone, together)


async def notify_mock(db: Database, max_size: int, slug: str, raw: bytes,
                      headers: Any) -> NotifyResult:
    """`flows.notify_mock`, batched with concurrent notifications when `max_size` > 1."""
    if max_size <= 1:
        return await anyio.to_thread.run_sync(flows.notify_mock, db, slug, raw, headers)
    batcher = _batchers.get(db)
    if batcher is None:
        with _made:
            batcher = _batchers.setdefault(db, _batcher(db, max_size))
    return await batcher.submit_async(MockNotification(slug, raw, headers))
