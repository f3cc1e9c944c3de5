"""Placing orders, showing them, expiring them, and every payment-state change.

`update_order_payment_status` is the single door through which any gateway, the
expiry job and the operator change an order's payment state. It applies the state
machine table and the stock and ticket side effects in the caller's transaction.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from ticketing.kit.clock import rfc3339, utcnow
from ticketing.kit.errors import Conflict, Invalid, NotFound
from ticketing.kit.metrics import ORDERS_CREATED, TICKETS_ISSUED
from ticketing.kit.sql import Pipeline, RowCountError
from ticketing.models import Order
from ticketing.order.repository import OrderRepository, pending_orders_due
from ticketing.order.state import PENDING_STATES, PayState, is_allowed, order_status
from ticketing.tenant.repository import TenantData
from ticketing.tenant.service import Caller
from ticketing.ticket import service as tickets

log = structlog.get_logger(component="order")


class StockGone(Conflict):
    """A closed order's stock was sold meanwhile; its late payment cannot be honoured."""

    code = "stock_gone"


@dataclass
class Transition:
    """What `update_order_payment_status` did."""

    accepted: bool
    order: Order | None
    from_state: PayState | None
    reason: str = ""
    tickets_issued: list[dict[str, Any]] = field(default_factory=list)


def _out_trade_no() -> str:
    # 32 chars max for WeChat Pay; time prefix keeps them roughly ordered for people.
    return utcnow().strftime("%Y%m%d%H%M%S") + secrets.token_hex(8).upper()


def _request_hash(items: list[dict[str, int]]) -> str:
    return hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()


def create_order(
    session: Session,
    caller: Caller,
    items: list[dict[str, int]],
    *,
    ttl_seconds: int,
    idempotency_key: str | None = None,
) -> tuple[Order, list[Any]]:
    """Place an order and hold its stock; the same Idempotency-Key returns the same order."""
    idempotency_key = idempotency_key or None  # an empty key is no key
    repo = OrderRepository(session, caller.tenant_id)
    if idempotency_key:
        existing = repo.by_idempotency_key(caller.user.id, idempotency_key)
        if existing is not None:
            if existing.request_hash != _request_hash(items):
                raise Conflict("Idempotency-Key was used with another request",
                               code="idempotency_key_reused")
            return existing, repo.items(existing.id)
    merged = merge_items(items)
    products = {p.product_id: p for p in TenantData(session, caller.tenant_id).products(list(merged))}
    plan = plan_order(caller.tenant_id, caller.user.id, items, products,
                      ttl_seconds=ttl_seconds, idempotency_key=idempotency_key, now=utcnow())
    order, rows = place_orders(session, [plan])[0]
    log_created(order)
    return order, rows


def merge_items(items: list[dict[str, int]]) -> dict[int, int]:
    """Quantities by product id (a product named twice is one line)."""
    merged: dict[int, int] = {}
    for item in items:
        merged[item["product_id"]] = merged.get(item["product_id"], 0) + item["quantity"]
    return merged


@dataclass
class OrderPlan:
    """An order ready to be written: its row, and its lines with their products."""

    values: dict[str, Any]
    lines: list[tuple[Any, int]]  # (product row, quantity)


def plan_order(tenant_id: int, user_id: int, items: list[dict[str, int]],
               products: dict[int, Any], *, ttl_seconds: int, idempotency_key: str | None,
               now: datetime) -> OrderPlan:
    """The order `items` make with these products (by product id); 404 or 422 if none can."""
    merged = merge_items(items)
    for product_id in merged:
        if product_id not in products:
            raise NotFound(f"Product {product_id} not found", code="product_not_found")
    total = sum(products[pid].price * qty for pid, qty in merged.items())
    if total > 10**12:
        raise Invalid("Order total too large", code="amount_too_large")
    values = {
        "tenant_id": tenant_id, "user_id": user_id, "out_trade_no": _out_trade_no(),
        "status": "PENDING", "payment_status": int(PayState.UNPAID), "total_amount": total,
        "currency": "CNY", "needs_refund": False, "idempotency_key": idempotency_key,
        "request_hash": _request_hash(items), "created_at": now, "updated_at": now,
        "expires_at": now + timedelta(seconds=ttl_seconds),
    }
    return OrderPlan(values, [(products[pid], qty) for pid, qty in merged.items()])


def place_orders(session: Session, plans: list[OrderPlan], *,
                 commit: bool = False) -> list[tuple[Order, list[Any]]]:
    """Write planned orders and hold their stock: one statement per table for all of them.

    Holding stock comes last: a product row, which every order for it touches, stays
    locked only until COMMIT. Product rows are locked in id order on every path (one
    statement per product, the units of all the orders summed), or two orders naming
    the same products in opposite orders deadlock. 409 if a product lacks the units.
    `commit`: the caller's transaction ends here, its COMMIT sent with the items and
    the stock (`Pipeline.flush`), so a product row is let go as soon as the database
    has committed.
    """
    pipeline = Pipeline(session)  # two exchanges: the orders, then their items and stock
    added = OrderRepository.add_many_in(pipeline, [plan.values for plan in plans])
    pipeline.flush()
    orders = [Order(id=row[0], **plan.values)  # detached copies of the rows, for the answer
              for row, plan in zip(added.rows, plans, strict=True)]
    items = OrderRepository.add_items_in(pipeline, [
        {
            "tenant_id": order.tenant_id, "order_id": order.id, "product_pk": product.id,
            "product_id": product.product_id, "product_name": product.name, "quantity": qty,
            "unit_price": product.price, "amount": product.price * qty,
        }
        for order, plan in zip(orders, plans, strict=True) for product, qty in plan.lines
    ])
    held: dict[tuple[int, int], list[Any]] = {}
    for order, plan in zip(orders, plans, strict=True):
        for product, qty in plan.lines:
            held.setdefault((product.id, order.tenant_id), [product, 0])[1] += qty
    reserved = [(product, OrderRepository.reserve_in(pipeline, tenant_id, product_pk, qty))
                for (product_pk, tenant_id), (product, qty) in sorted(held.items())]
    try:
        pipeline.flush(commit=commit)
    except RowCountError as exc:  # the first product, in id order, short of the units
        short = next((product for product, written in reserved if written is exc.queued), None)
        if short is None:
            raise
        raise Conflict(f"Not enough stock for product {short.product_id}",
                       code="insufficient_stock") from exc
    ORDERS_CREATED.inc(len(orders))
    by_order: dict[int, list[Any]] = {order.id: [] for order in orders}
    for row in items.rows:
        by_order[row.order_id].append(row)
    return [(order, by_order[order.id]) for order in orders]


def log_created(order: Order) -> None:
    """The log line of a placed order (in the log context of the request that placed it)."""
    log.info("order.created", tenant_id=order.tenant_id, order_id=order.id,
             total=order.total_amount)


def order_view(order: Order, items: Sequence[Any], ticket_views: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The contract's JSON form of an order (with tickets when given)."""
    view = {
        "order_id": order.id,
        "out_trade_no": order.out_trade_no,
        "status": order.status,
        "payment_status": order.payment_status,
        "total_amount": order.total_amount,
        "currency": order.currency,
        "items": [
            {"product_id": i.product_id, "product_name": i.product_name, "quantity": i.quantity,
             "unit_price": i.unit_price, "amount": i.amount}
            for i in items
        ],
        "created_at": rfc3339(order.created_at),
        "expires_at": rfc3339(order.expires_at),
    }
    if ticket_views is not None:
        view.update(
            paid_at=rfc3339(order.paid_at), transaction_id=order.transaction_id,
            gateway=order.gateway, needs_refund=order.needs_refund, tickets=ticket_views,
        )
    return view


def get_order(session: Session, tenant_id: int, order_id: int, *, owner_id: int | None = None) -> dict[str, Any]:
    """An order with its tickets; 404 if absent, another tenant's, or not the owner's."""
    repo = OrderRepository(session, tenant_id)
    order = repo.by_id(order_id)
    if order is None or (owner_id is not None and order.user_id != owner_id):
        raise NotFound("Order not found", code="order_not_found")
    return order_view(order, repo.items(order.id), tickets.order_tickets(session, tenant_id, order.id))


def by_product_row(items: Sequence[Any]) -> list[Any]:
    """Items in the order their product rows are locked everywhere (no deadlocks)."""
    return sorted(items, key=lambda item: item.product_pk)


def _paid_side_effects(repo: OrderRepository, order: Order, items: Sequence[Any],
                       current: PayState) -> None:
    if current in PENDING_STATES:  # held units become sold: the one deduction of a payment
        for item in items:
            repo.move_stock_last(item.product_pk, reserved=-item.quantity,
                                 stock=-item.quantity, sold=item.quantity)
        return
    for item in by_product_row(items):  # a closed order: its units must be free now
        if not repo.sell_free(item.product_pk, item.quantity):
            raise StockGone("The order's stock was sold after it closed")


def paid_values(now: datetime, paid_at: datetime | None, transaction_id: str | None,
                gateway: str | None) -> dict[str, Any]:
    """The columns a payment sets on its order."""
    return {"payment_status": int(PayState.PAID), "status": order_status(PayState.PAID),
            "updated_at": now, "paid_at": paid_at or now, "transaction_id": transaction_id,
            "gateway": gateway}


def pay_pending_orders(session: Session, paid: Sequence[Any], now: datetime,
                       pipeline: Pipeline, entitlements: dict[tuple[int, int], list[Any]]
                       ) -> list[list[dict[str, Any]]]:
    """Several pending orders paid at once: each order's issued tickets.

    `paid` holds (order, items, reason, gateway, transaction_id, paid_at)
    for locked orders in a pending state, which `is_allowed` lets move to PAID: the
    effects of `update_order_payment_status` for that transition, written for all
    the orders together (one statement per table instead of one per order), queued
    in `pipeline` with the stock moves last: the caller flushes it. `entitlements`
    are those of the orders' products, read in this transaction, by (tenant, product pk).
    """
    for order, items, *_ in paid:
        _paid_side_effects(OrderRepository(session, order.tenant_id), order, items,
                           PayState(order.payment_status))
    moves = [(order, paid_values(now, paid_at, txn_id, gateway), int(order.payment_status))
             for order, _items, _reason, gateway, txn_id, paid_at in paid]
    OrderRepository.set_states(pipeline, moves)
    issued = tickets.issue_for_orders(session, [(o, items) for o, items, *_ in paid], now,
                                      pipeline, entitlements)
    OrderRepository.record_events(pipeline, [
        (order.tenant_id, order.id, int(order.payment_status), int(PayState.PAID), True,
         reason, now) for order, _items, reason, *_ in paid])
    TICKETS_ISSUED.inc(sum(map(len, issued)))
    return issued


def update_order_payment_status(
    session: Session,
    tenant_id: int,
    order_id: int,
    pay_state: PayState,
    *,
    reason: str,
    gateway: str | None = None,
    transaction_id: str | None = None,
    paid_at: datetime | None = None,
    order: Order | None = None,
) -> Transition:
    """Move an order to `pay_state` if the rules allow, with its stock and ticket effects.

    A refused transition changes nothing but is recorded as an order event. Raises
    StockGone when a closed order is paid but its stock cannot be held again.
    """
    repo = OrderRepository(session, tenant_id)
    if order is None:
        order = repo.by_id(order_id, lock=True)
    if order is None:
        return Transition(False, None, None, "order not found")
    now = utcnow()
    current = PayState(order.payment_status)
    bound = log.bind(tenant_id=tenant_id, order_id=order.id, from_state=int(current),
                     to_state=int(pay_state))
    if not is_allowed(current, pay_state):
        why = f"{current.name} -> {pay_state.name} not allowed ({reason})"
        repo.record_event(order.id, current, pay_state, False, why, now)
        bound.warning("order.transition_refused", reason=reason)
        return Transition(False, order, current, why)
    issued: list[dict[str, Any]] = []
    values: dict[str, Any] = {"payment_status": int(pay_state),
                              "status": order_status(pay_state), "updated_at": now}
    items: Sequence[Any] = []
    if pay_state in (PayState.PAID, PayState.REFUNDED) or (
        pay_state == PayState.CLOSED and current in PENDING_STATES
    ):
        items = repo.items(order.id)
    if pay_state == PayState.PAID and current == PayState.CLOSED:
        with session.begin_nested():  # several items: all are sold again, or none
            _paid_side_effects(repo, order, items, current)
        values = paid_values(now, paid_at, transaction_id, gateway)
    elif pay_state == PayState.PAID:
        _paid_side_effects(repo, order, items, current)
        values = paid_values(now, paid_at, transaction_id, gateway)
    elif pay_state == PayState.CLOSED and current in PENDING_STATES:
        for item in items:
            repo.move_stock_last(item.product_pk, reserved=-item.quantity)
    elif pay_state == PayState.REFUNDED:
        tickets.void_for_order(session, order, now)
        for item in items:
            repo.move_stock_last(item.product_pk, stock=item.quantity, sold=-item.quantity)
    elif pay_state == PayState.PAYING and gateway:
        values["gateway"] = gateway
    if not repo.set_state(order, int(current), **values):
        raise RuntimeError(f"order {order.id} changed state under its lock")
    if pay_state == PayState.PAID:
        issued = tickets.issue_for_order(session, order, items, now)
        TICKETS_ISSUED.inc(len(issued))
    repo.record_event(order.id, current, pay_state, True, reason, now)
    bound.info("order.state_changed", reason=reason, tickets=len(issued))
    return Transition(True, order, current, reason, issued)


def flag_for_refund(session: Session, order: Order, reason: str) -> None:
    """Mark an order as holding money that must be returned to the payer."""
    repo = OrderRepository(session, order.tenant_id)
    stmt = repo.update(Order).where(Order.id == order.id).values(
        needs_refund=True, refund_reason=reason[:200], updated_at=utcnow())
    session.execute(stmt)
    set_committed_value(order, "needs_refund", True)
    log.warning("order.flagged_for_refund", tenant_id=order.tenant_id, order_id=order.id,
                reason=reason)


def clear_refund_flag(session: Session, order: Order) -> None:
    """The money an order was flagged for has been returned."""
    repo = OrderRepository(session, order.tenant_id)
    session.execute(repo.update(Order).where(Order.id == order.id).values(
        needs_refund=False, updated_at=utcnow()))
    set_committed_value(order, "needs_refund", False)


def expire_due(session: Session, now: datetime, limit: int = 100) -> int:
    """Close unpaid orders past their expiry and release their stock."""
    closed = 0
    for tenant_id, order_id in pending_orders_due(session, now, limit):
        result = update_order_payment_status(session, tenant_id, order_id, PayState.CLOSED,
                                             reason="expired")
        closed += int(result.accepted)
    return closed
