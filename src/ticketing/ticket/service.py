"""Issuing, voiding and showing tickets."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from ticketing.kit.clock import rfc3339
from ticketing.kit.errors import NotFound
from ticketing.kit.sql import Pipeline
from ticketing.kit.faults import fault_point
from ticketing.models import Order, Ticket
from ticketing.tenant.service import Caller
from ticketing.ticket.codes import looks_like_ticket_code, new_ticket_code
from ticketing.ticket.repository import RedemptionRepository, TicketRepository


def issue_for_order(session: Session, order: Any, items: Sequence[Any],
                    when: datetime) -> list[dict[str, Any]]:
    """One ticket per unit bought, each carrying a copy of its product's entitlements.

    UNIQUE (order_item_id, unit_index) makes a second issuance for the same order fail
    even if a caller got the state checks wrong.
    """
    return issue_for_orders(session, [(order, items)], when)[0]


def issue_for_orders(session: Session, orders: Sequence[tuple[Any, Sequence[Any]]],
                     when: datetime, pipeline: Pipeline | None = None,
                     entitlements: dict[tuple[int, int], list[Any]] | None = None,
                     ) -> list[list[dict[str, Any]]]:
    """Tickets for several paid orders (order, items) in two statements; each order's list.
    With `pipeline`, the tickets are queued there, to be inserted when it is flushed.

    The entitlements of the orders' products are read as they are now, in this
    transaction, and each ticket is inserted with its own copy of them (a copy: a
    product's entitlements may change later, a sold ticket's do not). A caller that
    read them already in this transaction (`TicketRepository.entitlements_of_orders`)
    passes them as `entitlements`, by (tenant, product pk).
    """
    products = sorted({(order.tenant_id, item.product_pk) for order, items in orders
                       for item in items})
    if entitlements is None:
        entitlements = TicketRepository.product_entitlements(session, products)
    copies = {key: _copy(entitlements.get(key, [])) for key in products}
    fault_point("tickets.after_entitlements")  # the entitlements are read, no ticket written
    rows = [
        {
            "tenant_id": order.tenant_id, "order_id": order.id, "order_item_id": item.id,
            "unit_index": unit, "user_id": order.user_id, "ticket_code": new_ticket_code(),
            "product_id": item.product_id, "product_name": item.product_name,
            "status": "ACTIVE", "issued_at": when, "voided_at": None,
            "entitlements": copies[(order.tenant_id, item.product_pk)][0],
            "uses_left": copies[(order.tenant_id, item.product_pk)][1],
        }
        for order, items in orders
        for item in items
        for unit in range(item.quantity)
    ]
    TicketRepository.insert_tickets(session, rows, pipeline)
    fault_point("tickets.after_first_ticket")  # the tickets are written, the payment not
    issued: dict[int, list[dict[str, Any]]] = {order.id: [] for order, _ in orders}
    for r in rows:
        issued[r["order_id"]].append({"ticket_code": r["ticket_code"],
                                      "product_id": r["product_id"],
                                      "product_name": r["product_name"]})
    return [issued[order.id] for order, _ in orders]


def _copy(entitlements: Sequence[Any]) -> tuple[list[dict[str, Any]], int]:
    """A ticket's entitlements from its product's rows, and their uses in total."""
    return ([{"code": e.code, "name": e.name, "uses_total": e.uses, "uses_left": e.uses}
             for e in entitlements], sum(e.uses for e in entitlements))


def void_for_order(session: Session, order: Order, when: datetime) -> int:
    """Void every live ticket of an order (refund)."""
    return TicketRepository(session, order.tenant_id).void_order(order.id, when)


def staff_view(user_id: int, name: str) -> dict[str, Any]:
    """Who scanned: the staff member's id and name."""
    return {"user_id": user_id, "name": name}


def redemption_view(row: Any) -> dict[str, Any]:
    """An accepted redemption as a ticket shows it (row: Redemption, staff name, …)."""
    r = row[0]
    return {"id": r.id, "entitlement": r.entitlement, "location": r.location,
            "staff": staff_view(r.staff_user_id, row[1]), "redeemed_at": rfc3339(r.redeemed_at)}


def entitlements_view(entitlements: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """A ticket's entitlements as the contract shows them."""
    return [{"code": e["code"], "name": e["name"], "uses_total": e["uses_total"],
             "uses_left": e["uses_left"]} for e in entitlements]


def ticket_view(ticket: Any, redemptions: Sequence[Any] = ()) -> dict[str, Any]:
    """The contract's JSON form of a ticket; `redemptions` are accepted ones, oldest first."""
    return {
        "ticket_code": ticket.ticket_code,
        "status": ticket.status,
        "order_id": ticket.order_id,
        "product_id": ticket.product_id,
        "product_name": ticket.product_name,
        "entitlements": entitlements_view(ticket.entitlements),
        "issued_at": rfc3339(ticket.issued_at),
        "redemptions": [redemption_view(r) for r in redemptions],
    }


def views(session: Session, tenant_id: int, tickets: Sequence[Any]) -> list[dict[str, Any]]:
    """Contract views of several tickets (their entitlements are on them): one query more."""
    used = RedemptionRepository(session, tenant_id).accepted_for_tickets([t.id for t in tickets])
    return [ticket_view(t, used.get(t.id, [])) for t in tickets]


def my_tickets(session: Session, caller: Caller, limit: int = 200) -> list[dict[str, Any]]:
    """The caller's tickets, newest first."""
    tickets = TicketRepository(session, caller.tenant_id).for_user(caller.user.id, limit)
    return views(session, caller.tenant_id, tickets)


def order_tickets(session: Session, tenant_id: int, order_id: int) -> list[dict[str, Any]]:
    """The tickets of one order."""
    tickets = TicketRepository(session, tenant_id).for_order(order_id)
    return views(session, tenant_id, tickets)


def visible_ticket(session: Session, caller: Caller, code: str) -> Ticket:
    """The ticket if the caller owns it or is the tenant's staff; 404 otherwise."""
    ticket = None
    if looks_like_ticket_code(code):
        ticket = TicketRepository(session, caller.tenant_id).by_code(code)
    if ticket is None or (caller.user.role != "staff" and ticket.user_id != caller.user.id):
        raise NotFound("Ticket not found", code="ticket_not_found")
    return ticket


def get_ticket(session: Session, caller: Caller, code: str) -> dict[str, Any]:
    """One ticket with its redemptions and the payment that bought it."""
    ticket = visible_ticket(session, caller, code)
    paid = TicketRepository(session, caller.tenant_id).payment_of(ticket.order_id)
    view = views(session, caller.tenant_id, [ticket])[0]
    view["payment"] = {"gateway": paid.gateway if paid else None,
                       "transaction_id": paid.transaction_id if paid else None,
                       "paid_at": rfc3339(paid.paid_at) if paid else None}
    return view
