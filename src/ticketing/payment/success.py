"""First-seen SUCCESS notifications for pending orders: the common case, in two round
trips (BEGIN goes with the first, and COMMIT with the second when the caller's
transaction ends there).

A sale opening is mostly this: a verified SUCCESS notification, seen for the first
time, for a pending order of the same amount. `apply_successes` applies any number
of them (a batch, or one alone) in the caller's transaction, with its statements
queued in a `Pipeline`: the orders locked and what they need read in one round trip,
everything written in another. It answers only what it applied; a notification it
does not answer (its order unknown, closed or paid, the amount wrong, the transaction
id recorded already) goes to the path that handles every case,
`service.handle_notice`, which finds the same rows and answers it.

Exactly-once rests on the same guarantees as that path: the order row locks (taken
in id order, so two batches never deadlock), the recorded transactions read after
the locks are held, and UNIQUE (tenant, gateway, txn id) refusing a second recording.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy.orm import Session

from ticketing.kit.clock import utcnow
from ticketing.kit.faults import fault_point
from ticketing.kit.sql import Pipeline
from ticketing.notification.repository import NotificationRepository
from ticketing.notification.service import notification_row
from ticketing.order import service as orders
from ticketing.order.repository import OrderRepository
from ticketing.order.state import PENDING_STATES, PayState, order_status
from ticketing.payment.gateways.base import PaymentNotice, Received
from ticketing.payment.repository import PaymentRepository
from ticketing.payment.service import NotifyResult, notice_reason, processed_body, txn_row
from ticketing.ticket.repository import TicketRepository

log = structlog.get_logger(component="payment")


@dataclass
class Success:
    """A verified SUCCESS notice naming its order by id, with what its request brought."""

    index: int                # the answer's key: its request's place in a batch
    context: dict[str, Any]   # the log context of that request
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


def is_success(notice: PaymentNotice) -> bool:
    """Whether `apply_successes` can take this notice."""
    return notice.status == "SUCCESS" and notice.order_id is not None


def apply_successes(session: Session, pipeline: Pipeline, successes: Sequence[Success], *,
                    batched: bool = False, commit: bool = False,
                    admit: Callable[[Sequence[Success]], Sequence[Success]] | None = None
                    ) -> dict[int, NotifyResult]:
    """Apply those of `successes` whose orders are pending with their amount, in the
    caller's transaction: their answers by `index` (valid once it commits).

    At most one of `successes` may name an order or a transaction id, unless `admit`
    is given: then they are candidates, and `admit`, called once their rows have been
    read (with whatever else the caller queued in `pipeline`), returns those to apply,
    at most one per order and transaction id. A candidate left out was only read (and
    its order locked until the caller's transaction ends). `batched`: they came in a
    batch, whose requests have logged nothing yet (one alone has logged its arrival),
    so each applied one's log lines start with its arrival. `commit`: if any is applied,
    the caller's transaction ends with their writes, whose round trip carries its COMMIT
    (`Pipeline.flush`); its answers are then valid at once, and its orders' and product
    rows' locks let go without another round trip.
    """
    if not successes:
        return {}
    keys = [s.order_key for s in successes]
    # the orders locked, then (each after the locks) what was recorded and their items
    lock = OrderRepository.lock_many(pipeline, keys)
    txns = PaymentRepository.txns_by_key(pipeline, [s.txn_key for s in successes])
    items_of = OrderRepository.items_many(pipeline, keys)
    entitlements_of = TicketRepository.entitlements_of_orders(pipeline, keys)
    pipeline.flush()
    if admit is not None:
        successes = admit(successes)
    locked, recorded, items = lock(), txns(), items_of()
    ready = []
    for s in successes:
        order = locked.get(s.order_key)
        if (order is not None and s.txn_key not in recorded
                and s.notice.amount == order.total_amount
                and PayState(order.payment_status) in PENDING_STATES):
            ready.append((s, order))
    if not ready:
        return {}
    fault_point("payment.before_apply")
    now = utcnow()
    issued = orders.pay_pending_orders(session, [
        (order, items.get(order.id, []), notice_reason(s.notice), s.notice.gateway,
         s.notice.gateway_txn_id, s.notice.paid_at) for s, order in ready], now, pipeline,
        entitlements_of())
    bodies = [processed_body(order.id, order_status(PayState.PAID), tickets)
              for (_, order), tickets in zip(ready, issued, strict=True)]
    PaymentRepository.add_txns(session, [
        txn_row(s.tenant_id, s.notice, order.id, "processed", True, body)
        for (s, order), body in zip(ready, bodies, strict=True)], pipeline)
    fault_point("payment.before_record")
    kept = NotificationRepository.queue_many(pipeline, [
        notification_row(s.tenant_id, s.received, outcome="processed", http_status=200,
                         notice=s.notice, order_id=order.id,
                         request_id=s.context.get("request_id"))
        for s, order in ready])
    OrderRepository.queue_stock_moves(session, pipeline)  # the hot product rows, last
    pipeline.flush(commit=commit)
    ids = [row[0] for row in kept.rows]
    results = {}
    for (s, order), body, nid, tickets in zip(ready, bodies, ids, issued, strict=True):
        # each line with its request's context and this payment's ids (given to each
        # call: binding them into the context and out again costs more, log or no log)
        ids_of = {**s.context, "tenant_id": s.tenant_id, "order_id": order.id,
                  "notification_id": nid, "gateway_txn_id": s.notice.gateway_txn_id}
        if batched:
            log.info("notification.received",
                     **{**ids_of, "verification": s.received.verification})
        log.info("order.state_changed", **{**ids_of, "from_state": int(order.payment_status),
                                           "to_state": int(PayState.PAID),
                                           "tickets": len(tickets)})
        log.info("notification.handled", **{**ids_of, "outcome": "processed",
                                            "http_status": 200, "batched": batched})
        results[s.index] = NotifyResult(200, body, "processed", order.id, nid)
    return results
