"""The invariant checker's queries: each returns only the rows that break a rule.

Every query spans all tenants (the checker is the one reader that does) and makes one
pass over the tables it reads, grouping in the database; a healthy database answers
each with no rows. Joins also match `tenant_id`, so a row linked to another tenant's
row counts as unlinked. Each statement leads with `tenant_id` and is ordered, so
the caller can add a LIMIT and report the first violations of each check.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    CompoundSelect,
    Select,
    and_,
    case,
    column,
    exists,
    func,
    literal,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import GenericFunction

from ticketing.models import (
    SERVICE_KEPT,
    Base,
    Notification,
    Order,
    OrderItem,
    PaymentTransaction,
    Product,
    Redemption,
    Refund,
    Tenant,
    Ticket,
)
from ticketing.order.state import ORDER_STATUS

PT = PaymentTransaction
SETTLED = ("PAID", "REFUNDED")  # order statuses that must have exactly one applied payment


def tenant_slugs() -> Select[tuple[int, str]]:
    """(id, slug) of every tenant."""
    return select(Tenant.id, Tenant.slug)


def _same_tenant(a: Any, b: Any) -> Any:
    return a.tenant_id == b.tenant_id


def _count_if(condition: Any) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def products() -> Select[Any]:
    """Products whose counters disagree with their orders or with each other."""
    units = (select(OrderItem.tenant_id, OrderItem.product_pk,
                    func.sum(case((Order.status == "PENDING", OrderItem.quantity), else_=0))
                    .label("pending"),
                    func.sum(case((Order.status == "PAID", OrderItem.quantity), else_=0))
                    .label("paid"))
             .join(Order, and_(Order.id == OrderItem.order_id, _same_tenant(Order, OrderItem)))
             .where(Order.status.in_(("PENDING", "PAID")))
             .group_by(OrderItem.tenant_id, OrderItem.product_pk)
             .subquery())
    pending = func.coalesce(units.c.pending, 0).label("pending")
    paid = func.coalesce(units.c.paid, 0).label("paid")
    return (select(Product.tenant_id, Product.product_id, Product.stock, Product.reserved,
                   Product.sold, Product.stock_loaded, pending, paid)
            .outerjoin(units, and_(units.c.product_pk == Product.id,
                                   units.c.tenant_id == Product.tenant_id))
            .where(or_(Product.reserved != pending, Product.sold != paid,
                       Product.stock + Product.sold != Product.stock_loaded,
                       Product.stock < Product.reserved, Product.reserved < 0))
            .order_by(Product.tenant_id, Product.id))


def order_totals_and_status() -> Select[Any]:
    """Orders whose total is not their items' sum, or whose status does not follow payment."""
    totals = (select(OrderItem.tenant_id, OrderItem.order_id,
                     func.sum(OrderItem.amount).label("amount"))
              .group_by(OrderItem.tenant_id, OrderItem.order_id)
              .subquery())
    items_total = func.coalesce(totals.c.amount, 0).label("items_total")
    expected = case({int(state): status for state, status in ORDER_STATUS.items()},
                    value=Order.payment_status, else_=None)
    return (select(Order.tenant_id, Order.id, Order.status, Order.payment_status,
                   Order.total_amount, items_total)
            .outerjoin(totals, and_(totals.c.order_id == Order.id,
                                    totals.c.tenant_id == Order.tenant_id))
            .where(or_(Order.total_amount != items_total, expected.is_(None),
                       Order.status != expected))
            .order_by(Order.tenant_id, Order.id))


def item_tickets() -> Select[Any]:
    """Items with live tickets outside their units, or of a PAID order without one per unit.

    `order_status` is NULL when the item's order is missing.

    Tickets are joined by `order_item_id` alone, and another tenant's tickets are left
    out of the counts instead: an equality on `tenant_id` in the join would let SQLite
    look the tickets up by `ix_tickets_order`'s `tenant_id` (one tenant: every ticket)
    for each item instead of by the `(order_item_id, unit_index)` key, a nested scan.
    """
    same_tenant = _same_tenant(Ticket, OrderItem)  # false when the item has no live ticket
    misplaced = _count_if(and_(same_tenant,
                               or_(Ticket.unit_index < 0, Ticket.unit_index >= OrderItem.quantity,
                                   Ticket.order_id != OrderItem.order_id))).label("misplaced")
    live = func.count(case((same_tenant, Ticket.id))).label("live")
    return (select(OrderItem.tenant_id, OrderItem.order_id, OrderItem.id, OrderItem.quantity,
                   Order.status.label("order_status"), live, misplaced)
            .outerjoin(Order, and_(Order.id == OrderItem.order_id, _same_tenant(Order, OrderItem)))
            .outerjoin(Ticket, and_(Ticket.order_item_id == OrderItem.id, Ticket.status != "VOID"))
            .group_by(OrderItem.tenant_id, OrderItem.order_id, OrderItem.id, OrderItem.quantity,
                      Order.status)
            .having(or_(misplaced > 0, and_(Order.status == "PAID", live != OrderItem.quantity)))
            .order_by(OrderItem.tenant_id, OrderItem.id))


def live_tickets_of_unpaid_orders() -> Select[Any]:
    """(tenant, order, its status or NULL if missing, live tickets) for orders not PAID."""
    return (select(Ticket.tenant_id, Ticket.order_id, Order.status.label("order_status"),
                   func.count().label("live"))
            .outerjoin(Order, and_(Order.id == Ticket.order_id, _same_tenant(Order, Ticket)))
            .where(Ticket.status != "VOID", or_(Order.status.is_(None), Order.status != "PAID"))
            .group_by(Ticket.tenant_id, Ticket.order_id, Order.status)
            .order_by(Ticket.tenant_id, Ticket.order_id))


def duplicate_gateway_txns() -> Select[Any]:
    """(tenant, gateway, gateway txn id, times recorded) recorded more than once."""
    n = func.count().label("n")
    return (select(PT.tenant_id, PT.gateway, PT.gateway_txn_id, n)
            .group_by(PT.tenant_id, PT.gateway, PT.gateway_txn_id)
            .having(func.count() > 1)
            .order_by(PT.tenant_id, PT.gateway, PT.gateway_txn_id))


def payment_records() -> Select[Any]:
    """Payments applied without success, or whose `refunded` disagrees with their refunds."""
    done = (select(Refund.tenant_id, Refund.payment_transaction_id, func.count().label("n"))
            .where(Refund.status == "SUCCESS")
            .group_by(Refund.tenant_id, Refund.payment_transaction_id)
            .subquery())
    refunds = func.coalesce(done.c.n, 0).label("refunds")
    return (select(PT.tenant_id, PT.id, PT.order_id, PT.gateway, PT.gateway_txn_id, PT.status,
                   PT.applied, PT.refunded, refunds)
            .outerjoin(done, and_(done.c.payment_transaction_id == PT.id,
                                  done.c.tenant_id == PT.tenant_id))
            .where(or_(and_(PT.applied, PT.status != "SUCCESS"), refunds > 1,
                       and_(PT.refunded, refunds == 0), and_(~PT.refunded, refunds > 0)))
            .order_by(PT.tenant_id, PT.id))


def order_payments() -> Select[Any]:
    """Orders whose applied payment or `needs_refund` flag disagrees with their payments.

    `applied` counts applied payments; when it is 1, `amount`, `txn` and `refunded`
    describe that payment. `owed` counts successful payments neither applied nor refunded.
    """
    per_order = (select(PT.tenant_id, PT.order_id,
                        _count_if(PT.applied).label("applied"),
                        func.min(case((PT.applied, PT.amount))).label("amount"),
                        func.min(case((PT.applied, PT.gateway_txn_id))).label("txn"),
                        func.max(case((and_(PT.applied, PT.refunded), 1), else_=0))
                        .label("refunded"),
                        _count_if(and_(PT.status == "SUCCESS", ~PT.applied, ~PT.refunded))
                        .label("owed"))
                 .group_by(PT.tenant_id, PT.order_id)
                 .subquery())
    applied = func.coalesce(per_order.c.applied, 0).label("applied")
    owed = func.coalesce(per_order.c.owed, 0).label("owed")
    settled = Order.status.in_(SETTLED)
    refund_state_differs = or_(and_(Order.status == "REFUNDED", per_order.c.refunded == 0),
                               and_(Order.status != "REFUNDED", per_order.c.refunded == 1))
    return (select(Order.tenant_id, Order.id, Order.status, Order.total_amount,
                   Order.transaction_id, Order.needs_refund, applied, per_order.c.amount,
                   per_order.c.txn, per_order.c.refunded, owed)
            .outerjoin(per_order, and_(per_order.c.order_id == Order.id,
                                       per_order.c.tenant_id == Order.tenant_id))
            .where(or_(and_(settled, or_(applied != 1, per_order.c.amount != Order.total_amount,
                                         Order.transaction_id.is_distinct_from(per_order.c.txn),
                                         refund_state_differs)),
                       and_(~settled, applied > 0),
                       and_(Order.needs_refund, owed == 0),
                       and_(~Order.needs_refund, owed > 0)))
            .order_by(Order.tenant_id, Order.id))


def unknown_notification_outcomes(known: tuple[str, ...]) -> Select[Any]:
    """(tenant, outcome, notifications, first id) for outcomes not in `known`."""
    return (select(Notification.tenant_id, Notification.outcome, func.count().label("n"),
                   func.min(Notification.id).label("first_id"))
            .where(or_(Notification.outcome.is_(None), Notification.outcome.not_in(known)))
            .group_by(Notification.tenant_id, Notification.outcome)
            .order_by(Notification.tenant_id, Notification.outcome))


class json_elements(GenericFunction[Any]):  # noqa: N801 - a SQL function's name
    """The elements of a JSON array, one row each in a column `value`."""

    _register = False
    inherit_cache = True
    name = "json_elements"


@compiles(json_elements, "postgresql")
def _jsonb_array_elements(element: json_elements, compiler: Any, **kw: Any) -> str:
    # as jsonb, each field read from an element is not parsed out of its text again
    return f"jsonb_array_elements(CAST({compiler.process(element.clauses, **kw)} AS JSONB))"


@compiles(json_elements, "sqlite")
def _json_each(element: json_elements, compiler: Any, **kw: Any) -> str:
    return f"json_each({compiler.process(element.clauses, **kw)})"


def ticket_uses() -> Select[Any]:
    """Tickets whose entitlements' uses disagree with each other or with their scans.

    Per ticket, from its JSON list: the entitlements `listed`, the `off` ones (uses left
    outside 0..uses_total, or accepted scans of the code other than the uses taken),
    `repeated` codes, the uses left they add up to (`listed_left`) and the uses taken
    (`taken`); beside them the ticket's own `uses_left` and its accepted scans of any
    code. A ticket is REDEEMED exactly when it lists entitlements and has no use left.
    """
    ent = json_elements(Ticket.entitlements).table_valued(column("value", JSON)).alias("e")
    code = ent.c.value["code"].as_string()
    total, left = ent.c.value["uses_total"].as_integer(), ent.c.value["uses_left"].as_integer()
    accepted = Redemption.accepted.is_(True)
    per_code = (select(Redemption.tenant_id, Redemption.ticket_id, Redemption.entitlement,
                       func.count().label("n"))
                .where(accepted).group_by(Redemption.tenant_id, Redemption.ticket_id,
                                          Redemption.entitlement)
                .subquery())
    per_ticket = (select(Redemption.tenant_id, Redemption.ticket_id, func.count().label("n"))
                  .where(accepted).group_by(Redemption.tenant_id, Redemption.ticket_id)
                  .subquery())
    scans = func.coalesce(per_ticket.c.n, 0).label("scans")
    off = _count_if(and_(code.is_not(None), or_(
        left < 0, left > total,
        func.coalesce(per_code.c.n, 0) != total - left))).label("off")
    listed = func.count(code).label("listed")
    repeated = (listed - func.count(code.distinct())).label("repeated")
    listed_left = func.coalesce(func.sum(left), 0).label("listed_left")
    taken = func.coalesce(func.sum(total - left), 0).label("taken")
    return (select(Ticket.tenant_id, Ticket.id, Ticket.order_id, Ticket.status,
                   Ticket.uses_left, listed, off, repeated, listed_left, taken, scans)
            .select_from(Ticket)
            .outerjoin(ent, true())
            .outerjoin(per_code, and_(per_code.c.tenant_id == Ticket.tenant_id,
                                      per_code.c.ticket_id == Ticket.id,
                                      per_code.c.entitlement == code))
            .outerjoin(per_ticket, and_(per_ticket.c.tenant_id == Ticket.tenant_id,
                                        per_ticket.c.ticket_id == Ticket.id))
            .group_by(Ticket.tenant_id, Ticket.id, Ticket.order_id, Ticket.status,
                      Ticket.uses_left, per_ticket.c.n)
            .having(or_(off > 0, repeated > 0, Ticket.uses_left != listed_left, scans != taken,
                        and_(Ticket.status == "REDEEMED", Ticket.uses_left != 0),
                        and_(Ticket.status == "ACTIVE", Ticket.uses_left == 0, listed > 0)))
            .order_by(Ticket.tenant_id, Ticket.id))


# Tables whose rows name their tenant without a foreign key (migration 0003).
UNCHECKED_TENANT = ("orders", "order_items", "order_events", "tickets", "payment_transactions",
                    "refunds", "notifications", "redemptions")


def dangling_references() -> CompoundSelect:
    """(tenant, what, id, names) for rows naming a tenant, a product, an order, an order
    item or a user that does not exist or is another tenant's: the references the
    schema leaves to the service (models.HOT_PARENTS, models.SERVICE_KEPT). A
    ticket's order item must also be of the ticket's order."""
    tenants = Tenant.__table__
    parts = []
    for name in UNCHECKED_TENANT:
        table = Base.metadata.tables[name]
        parts.append(select(table.c.tenant_id, literal(name).label("what"),
                            table.c.id.label("row_id"), literal("tenant").label("names"))
                     .where(~exists().where(tenants.c.id == table.c.tenant_id)))
    parts.append(select(OrderItem.tenant_id, literal("order").label("what"),
                        OrderItem.order_id.label("row_id"), literal("product").label("names"))
                 .where(~exists().where(Product.id == OrderItem.product_pk,
                                        _same_tenant(Product, OrderItem))))
    for source, referred in SERVICE_KEPT.items():
        name, key = source.split(".")
        table, parent = Base.metadata.tables[name], Base.metadata.tables[referred]
        found = and_(parent.c.id == table.c[key], parent.c.tenant_id == table.c.tenant_id)
        if source == "tickets.order_item_id":
            found = and_(found, parent.c.order_id == table.c.order_id)
        parts.append(select(table.c.tenant_id, literal(name).label("what"),
                            table.c.id.label("row_id"), literal(referred).label("names"))
                     .where(~exists().where(found)))
    return union_all(*parts).order_by("tenant_id", "what", "row_id")
