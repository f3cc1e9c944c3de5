"""The books must balance: invariants of stock, orders, tickets, payments, notifications.

`check(session)` reads every tenant and returns what is wrong, as `Violation`s naming
the tenant, the product or order, and the rule broken. Tests run it after every storm,
crash and fuzzing run; operators run it as `ticketing check`.

Each check is one query (audit.repository) that returns only the violating rows, so
the database makes one pass per check and Python sees only what it reports, however
many orders there are. Here each row is explained as the rules it breaks.

The rules (per tenant):
- product: reserved == units in PENDING orders; sold == units in PAID orders (refunded
  units went back to stock); stock + sold == stock_loaded; stock >= reserved >= 0.
- order: status follows payment_status; a PAID order has exactly one live ticket per
  unit bought and exactly one applied SUCCESS payment of its total; any other order has
  no live ticket; a REFUNDED order's applied payment is refunded and its tickets void;
  `needs_refund` is set exactly when money that was not applied is still unrefunded.
- ticket: each entitlement keeps 0 <= uses left <= uses total, and its accepted scans
  are the uses taken from it; codes are distinct; the ticket's `uses_left` is the sum
  of its entitlements'; a ticket is REDEEMED exactly when it had uses and has none left.
- payment: a gateway transaction id is recorded once; only SUCCESS payments are applied,
  only to PAID or REFUNDED orders; `refunded` matches one successful refund, never two.
- notification: every stored outcome is one of notification.service.OUTCOMES.
- references: every row names a tenant that exists; every order item a product of its
  tenant; every ticket, order event and payment transaction an order of its tenant,
  and every ticket an item of that order and a user of its tenant (the schema leaves
  these to the service: models.HOT_PARENTS, models.SERVICE_KEPT).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from ticketing.audit import repository as q
from ticketing.db import READONLY, Database
from ticketing.notification.service import OUTCOMES
from ticketing.order.state import PayState, order_status

# Violating rows reported per check; more are summed up in one `report_truncated` line.
REPORT_LIMIT = 100

Finding = tuple[str, str, str]  # subject, kind, detail


@dataclass(frozen=True)
class Violation:
    """One broken rule: where (tenant, subject) and what (kind, detail)."""

    tenant: str
    subject: str
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"tenant {self.tenant}: {self.subject}: {self.kind}: {self.detail}"


def check(session: Session, limit: int = REPORT_LIMIT) -> list[Violation]:
    """Every invariant violation in the database `session` reads, tenant by tenant.

    Each check is one query returning only violating rows; at most `limit` of them are
    reported per check, with a `report_truncated` line when there were more.
    """
    slugs = {tenant_id: slug for tenant_id, slug in session.execute(q.tenant_slugs())}
    found: list[tuple[int, int, Violation]] = []

    def report(tenant_id: int, rank: int, subject: str, kind: str, detail: str) -> None:
        tenant = slugs.get(tenant_id, f"#{tenant_id}")
        found.append((tenant_id, rank, Violation(tenant, subject, kind, detail)))

    for rank, (name, query, explain) in enumerate(CHECKS):
        rows = session.execute(query().limit(limit + 1)).all()
        for row in rows[:limit]:
            for finding in explain(row):
                report(row.tenant_id, rank, *finding)
        if len(rows) > limit:
            report(rows[limit].tenant_id, rank, f"check {name}", "report_truncated",
                   f"more than {limit} violating rows; the first {limit} are listed")
    found.sort(key=lambda f: f[:2])  # tenant by tenant, checks in order; stable within a check
    return [v for _, _, v in found]


def check_database(db: Database, limit: int = REPORT_LIMIT) -> list[Violation]:
    """`check` over one consistent snapshot (REPEATABLE READ on PostgreSQL)."""
    engine = db.engine.execution_options(**{READONLY: True})
    if db.dialect == "postgresql":
        engine = engine.execution_options(isolation_level="REPEATABLE READ")
    with Session(engine) as session, session.begin():
        if db.dialect == "postgresql":
            session.connection().exec_driver_sql("SET TRANSACTION READ ONLY")
        return check(session, limit)


def _product(p: Any) -> Iterator[Finding]:
    subject = f"product {p.product_id}"
    if p.reserved != p.pending:
        yield (subject, "reserved_mismatch",
               f"reserved {p.reserved} but pending orders hold {p.pending}")
    if p.sold != p.paid:
        yield subject, "sold_mismatch", f"sold {p.sold} but paid orders bought {p.paid}"
    if p.stock + p.sold != p.stock_loaded:
        yield (subject, "stock_mismatch",
               f"stock {p.stock} + sold {p.sold} != stock_loaded {p.stock_loaded}")
    if not p.stock >= p.reserved >= 0:
        yield subject, "stock_negative", f"stock {p.stock}, reserved {p.reserved}"


def _order(o: Any) -> Iterator[Finding]:
    if o.items_total != o.total_amount:
        yield (f"order {o.id}", "total_mismatch",
               f"total {o.total_amount} but items add up to {o.items_total}")
    try:
        expected = order_status(PayState(o.payment_status))
    except ValueError:
        expected = None
    if o.status != expected:
        yield (f"order {o.id}", "status_mismatch",
               f"status {o.status} with payment_status {o.payment_status}")


def _item_tickets(i: Any) -> Iterator[Finding]:
    if i.misplaced:
        yield (f"order {i.order_id}", "ticket_misplaced",
               f"item {i.id}: {i.misplaced} live ticket(s) outside its units")
    if i.order_status == "PAID" and i.live != i.quantity:
        yield (f"order {i.order_id}", "ticket_count",
               f"item {i.id}: {i.live} live ticket(s) for {i.quantity} unit(s) paid")


def _order_tickets(t: Any) -> Iterator[Finding]:
    status = t.order_status or "missing"
    if status == "REFUNDED":
        yield f"order {t.order_id}", "refunded_tickets_live", f"{t.live} ticket(s) not void"
    elif status != "PAID":
        yield (f"order {t.order_id}", "unpaid_tickets_live",
               f"{t.live} live ticket(s), order {status}")


def _ticket_uses(t: Any) -> Iterator[Finding]:
    subject = f"order {t.order_id}"
    if t.off:
        yield (subject, "ticket_uses_mismatch",
               f"ticket {t.id}: {t.off} entitlement(s) whose uses left are out of range or "
               "disagree with their accepted scans")
    if t.repeated:
        yield subject, "ticket_uses_mismatch", f"ticket {t.id}: {t.repeated} code(s) listed twice"
    if t.uses_left != t.listed_left:
        yield (subject, "ticket_uses_mismatch",
               f"ticket {t.id}: uses_left {t.uses_left} but its entitlements have {t.listed_left}")
    if t.scans != t.taken:
        yield (subject, "ticket_uses_mismatch",
               f"ticket {t.id}: {t.scans} accepted scan(s) for {t.taken} use(s) taken")
    if ((t.status == "REDEEMED" and t.uses_left != 0)
            or (t.status == "ACTIVE" and t.uses_left == 0 and t.listed)):
        yield (subject, "ticket_status_mismatch",
               f"ticket {t.id}: {t.status} with {t.uses_left} use(s) left")


def _duplicate_txn(t: Any) -> Iterator[Finding]:
    yield f"payment {t.gateway}/{t.gateway_txn_id}", "txn_duplicate", f"recorded {t.n} times"


def _payment(t: Any) -> Iterator[Finding]:
    txn = f"{t.gateway}/{t.gateway_txn_id}"
    if t.applied and t.status != "SUCCESS":
        yield (f"order {t.order_id}", "payment_applied_not_success",
               f"{txn} applied with status {t.status}")
    if t.refunds > 1:
        yield f"order {t.order_id}", "refunded_twice", f"{txn}: {t.refunds} successful refunds"
    if bool(t.refunded) != bool(t.refunds):
        yield (f"order {t.order_id}", "refund_record_mismatch",
               f"{txn}: refunded={bool(t.refunded)} but {t.refunds} successful refund(s)")


def _order_payment(o: Any) -> Iterator[Finding]:
    subject = f"order {o.id}"
    if o.status in q.SETTLED:
        yield from _settled_order_payment(o)
    elif o.applied:
        yield (subject, "payment_applied_unpaid",
               f"{o.applied} applied payment(s) but order {o.status}")
    if o.needs_refund and not o.owed:
        yield subject, "refund_flag_without_money", "flagged needs_refund, nothing to refund"
    if o.owed and not o.needs_refund:
        yield (subject, "unrefunded_money_unflagged",
               f"{o.owed} unapplied payment(s) unrefunded, order not flagged")


def _settled_order_payment(o: Any) -> Iterator[Finding]:
    subject = f"order {o.id}"
    if o.applied != 1:
        yield subject, "payment_count", f"order {o.status} with {o.applied} applied payment(s)"
        return
    if o.amount != o.total_amount:
        yield subject, "payment_amount", f"applied {o.amount}, order total {o.total_amount}"
    if o.transaction_id != o.txn:
        yield (subject, "payment_txn_mismatch",
               f"order names {o.transaction_id}, applied payment is {o.txn}")
    if (o.status == "REFUNDED") != bool(o.refunded):
        yield (subject, "refund_state_mismatch",
               f"order {o.status}, payment refunded={bool(o.refunded)}")


def _notification_outcome(n: Any) -> Iterator[Finding]:
    yield (f"notification {n.first_id}", "notification_outcome",
           f"{n.n} notification(s) with unknown outcome {n.outcome!r}")


def _dangling(r: Any) -> Iterator[Finding]:
    what = {"tenant": f"tenant {r.tenant_id}, which does not exist",
            "product": "a product that is not its tenant's",
            "orders": "an order that is not its tenant's",
            "order_items": "an order item that is not its order's",
            "users": "a user that is not its tenant's"}[r.names]
    yield f"{r.what} {r.row_id}", "dangling_reference", f"names {what}"


# (name, query of the violating rows, what each row breaks), reported in this order.
CHECKS: tuple[tuple[str, Callable[[], Any], Callable[[Any], Iterator[Finding]]], ...] = (
    ("products", q.products, _product),
    ("orders", q.order_totals_and_status, _order),
    ("item tickets", q.item_tickets, _item_tickets),
    ("order tickets", q.live_tickets_of_unpaid_orders, _order_tickets),
    ("ticket uses", q.ticket_uses, _ticket_uses),
    ("gateway transactions", q.duplicate_gateway_txns, _duplicate_txn),
    ("payments", q.payment_records, _payment),
    ("order payments", q.order_payments, _order_payment),
    ("notifications", lambda: q.unknown_notification_outcomes(OUTCOMES), _notification_outcome),
    ("references", q.dangling_references, _dangling),
)
