"""The books must balance: invariants of stock, orders, tickets, payments, notifications.

`check(session)` reads every tenant and returns what is wrong, as `Violation`s naming
the tenant, the product or order, and the rule broken. Tests run it after every storm,
crash and fuzzing run; operators run it as `ticketing check`.

The rules (per tenant):
- product: reserved == units in PENDING orders; sold == units in PAID orders (refunded
  units went back to stock); stock + sold == stock_loaded; stock >= reserved >= 0.
- order: status follows payment_status; a PAID order has exactly one live ticket per
  unit bought and exactly one applied SUCCESS payment of its total; any other order has
  no live ticket; a REFUNDED order's applied payment is refunded and its tickets void;
  `needs_refund` is set exactly when money that was not applied is still unrefunded.
- payment: a gateway transaction id is recorded once; only SUCCESS payments are applied,
  only to PAID or REFUNDED orders; `refunded` matches one successful refund, never two.
- notification: every stored outcome is one of notification.service.OUTCOMES.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from ticketing.audit.repository import AuditRepository, all_tenants
from ticketing.db import READONLY, Database
from ticketing.notification.service import OUTCOMES
from ticketing.order.state import PayState, order_status


@dataclass(frozen=True)
class Violation:
    """One broken rule: where (tenant, subject) and what (kind, detail)."""

    tenant: str
    subject: str
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"tenant {self.tenant}: {self.subject}: {self.kind}: {self.detail}"


def check(session: Session) -> list[Violation]:
    """Every invariant violation in the database `session` reads, tenant by tenant."""
    found: list[Violation] = []
    for tenant_id, slug in all_tenants(session):
        repo = AuditRepository(session, tenant_id)
        for subject, kind, detail in _tenant_violations(repo):
            found.append(Violation(slug, subject, kind, detail))
    return found


def check_database(db: Database) -> list[Violation]:
    """`check` over one consistent snapshot (REPEATABLE READ on PostgreSQL)."""
    engine = db.engine.execution_options(**{READONLY: True})
    if db.dialect == "postgresql":
        engine = engine.execution_options(isolation_level="REPEATABLE READ")
    with Session(engine) as session, session.begin():
        if db.dialect == "postgresql":
            session.connection().exec_driver_sql("SET TRANSACTION READ ONLY")
        return check(session)


def _tenant_violations(repo: AuditRepository) -> Iterator[tuple[str, str, str]]:
    orders = {o.id: o for o in repo.orders()}
    items = repo.items()
    payments = repo.payments()
    yield from _product_violations(repo)
    yield from _order_violations(orders, items)
    yield from _ticket_violations(repo, orders, items)
    yield from _payment_violations(repo, orders, payments)
    yield from _refund_flag_violations(orders, payments)
    for outcome, count, first_id in repo.notification_outcomes():
        if outcome not in OUTCOMES:
            yield (f"notification {first_id}", "notification_outcome",
                   f"{count} notification(s) with unknown outcome {outcome!r}")


def _product_violations(repo: AuditRepository) -> Iterator[tuple[str, str, str]]:
    units: dict[tuple[int, str], int] = {
        (pk, status): int(n) for pk, status, n in repo.units_by_product_and_status()}
    for p in repo.products():
        subject = f"product {p.product_id}"
        pending, paid = units.get((p.id, "PENDING"), 0), units.get((p.id, "PAID"), 0)
        if p.reserved != pending:
            yield subject, "reserved_mismatch", f"reserved {p.reserved} but pending orders hold {pending}"
        if p.sold != paid:
            yield subject, "sold_mismatch", f"sold {p.sold} but paid orders bought {paid}"
        if p.stock + p.sold != p.stock_loaded:
            yield (subject, "stock_mismatch",
                   f"stock {p.stock} + sold {p.sold} != stock_loaded {p.stock_loaded}")
        if not p.stock >= p.reserved >= 0:
            yield subject, "stock_negative", f"stock {p.stock}, reserved {p.reserved}"


def _order_violations(orders: dict[int, Any], items: Any) -> Iterator[tuple[str, str, str]]:
    totals: Counter[int] = Counter()
    for item in items:
        totals[item.order_id] += item.amount
    for o in orders.values():
        if totals[o.id] != o.total_amount:
            yield (f"order {o.id}", "total_mismatch",
                   f"total {o.total_amount} but items add up to {totals[o.id]}")
        try:
            expected = order_status(PayState(o.payment_status))
        except ValueError:
            expected = None
        if o.status != expected:
            yield (f"order {o.id}", "status_mismatch",
                   f"status {o.status} with payment_status {o.payment_status}")


def _ticket_violations(repo: AuditRepository, orders: dict[int, Any],
                       items: Any) -> Iterator[tuple[str, str, str]]:
    live: dict[int, tuple[int, int]] = {}
    live_by_order: Counter[int] = Counter()
    for order_id, item_id, count, misplaced in repo.live_tickets_by_item():
        live[item_id] = (int(count), int(misplaced or 0))
        live_by_order[order_id] += int(count)
    for item_id, order_id, quantity, _amount in items:
        order = orders.get(order_id)
        count, misplaced = live.get(item_id, (0, 0))
        if misplaced:
            yield (f"order {order_id}", "ticket_misplaced",
                   f"item {item_id}: {misplaced} live ticket(s) outside its units")
        if order is not None and order.status == "PAID" and count != quantity:
            yield (f"order {order_id}", "ticket_count",
                   f"item {item_id}: {count} live ticket(s) for {quantity} unit(s) paid")
    for order_id, count in sorted(live_by_order.items()):
        order = orders.get(order_id)
        status = order.status if order is not None else "missing"
        if status == "REFUNDED":
            yield f"order {order_id}", "refunded_tickets_live", f"{count} ticket(s) not void"
        elif status != "PAID":
            yield f"order {order_id}", "unpaid_tickets_live", f"{count} live ticket(s), order {status}"


def _payment_violations(repo: AuditRepository, orders: dict[int, Any],
                        payments: Any) -> Iterator[tuple[str, str, str]]:
    seen: Counter[tuple[str, str]] = Counter((t.gateway, t.gateway_txn_id) for t in payments)
    for (gateway, txn_id), n in sorted(seen.items()):
        if n > 1:
            yield f"payment {gateway}/{txn_id}", "txn_duplicate", f"recorded {n} times"
    refunds = {txn_pk: int(n) for txn_pk, n in repo.successful_refunds()}
    applied: dict[int, list[Any]] = defaultdict(list)
    for t in payments:
        if t.applied:
            applied[t.order_id].append(t)
            if t.status != "SUCCESS":
                yield (f"order {t.order_id}", "payment_applied_not_success",
                       f"{t.gateway}/{t.gateway_txn_id} applied with status {t.status}")
        if refunds.get(t.id, 0) > 1:
            yield (f"order {t.order_id}", "refunded_twice",
                   f"{t.gateway}/{t.gateway_txn_id}: {refunds[t.id]} successful refunds")
        if t.refunded != bool(refunds.get(t.id)):
            yield (f"order {t.order_id}", "refund_record_mismatch",
                   f"{t.gateway}/{t.gateway_txn_id}: refunded={t.refunded} but "
                   f"{refunds.get(t.id, 0)} successful refund(s)")
    for o in orders.values():
        mine = applied.get(o.id, [])
        if o.status in ("PAID", "REFUNDED"):
            yield from _paid_order_payment(o, mine)
        elif mine:
            yield (f"order {o.id}", "payment_applied_unpaid",
                   f"{len(mine)} applied payment(s) but order {o.status}")


def _paid_order_payment(o: Any, mine: list[Any]) -> Iterator[tuple[str, str, str]]:
    subject = f"order {o.id}"
    if len(mine) != 1:
        yield subject, "payment_count", f"order {o.status} with {len(mine)} applied payment(s)"
        return
    t = mine[0]
    if t.amount != o.total_amount:
        yield subject, "payment_amount", f"applied {t.amount}, order total {o.total_amount}"
    if o.transaction_id != t.gateway_txn_id:
        yield (subject, "payment_txn_mismatch",
               f"order names {o.transaction_id}, applied payment is {t.gateway_txn_id}")
    if (o.status == "REFUNDED") != bool(t.refunded):
        yield subject, "refund_state_mismatch", f"order {o.status}, payment refunded={t.refunded}"


def _refund_flag_violations(orders: dict[int, Any], payments: Any) -> Iterator[tuple[str, str, str]]:
    owed: Counter[int] = Counter(
        t.order_id for t in payments if t.status == "SUCCESS" and not t.applied and not t.refunded)
    for o in orders.values():
        if o.needs_refund and not owed[o.id]:
            yield f"order {o.id}", "refund_flag_without_money", "flagged needs_refund, nothing to refund"
        if owed[o.id] and not o.needs_refund:
            yield (f"order {o.id}", "unrefunded_money_unflagged",
                   f"{owed[o.id]} unapplied payment(s) unrefunded, order not flagged")
