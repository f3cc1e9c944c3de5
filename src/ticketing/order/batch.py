"""Orders placed together are written together (a group commit: kit.batching).

At a sale opening each worker process receives many POST /orders at once. A batch
writes them in one transaction: the callers looked up in one query, their products
in one, the orders and their items each in one INSERT, and each product's units for
all the orders held in one compare-and-set UPDATE (product rows in id order, as
everywhere). Nobody is answered before the COMMIT.

An order with an Idempotency-Key never joins a batch (it may have to return the order
placed before), and neither does one whose caller, products or total are not valid:
those, and every order of a batch that fails (a product short of the units the whole
batch asks for, say), are placed one at a time, exactly as if each had arrived alone,
with their own answers and errors.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ticketing.db import Database
from ticketing.kit.batching import Entry, GroupCommit
from ticketing.kit.clock import utcnow
from ticketing.kit.errors import TicketingError
from ticketing.order import service
from ticketing.kit.sql import Pipeline, plan_once
from ticketing.tenant.repository import products_in, users_by_token_hashes_in
from ticketing.tenant.service import authenticate, find_tenant, hash_token

log = structlog.get_logger(component="order")


@dataclass(frozen=True)
class OrderRequest:
    """POST /orders as its request brought it."""

    slug: str
    token: str | None
    items: list[dict[str, int]]
    idempotency_key: str | None


def place_alone(db: Database, ttl_seconds: int, req: OrderRequest) -> dict[str, Any]:
    """Place one order in a transaction of its own; the contract's view of it.

    Two requests with the same Idempotency-Key at once (a client retrying before its
    first try was answered) both find no order under the key; on PostgreSQL the second
    to insert waits for the first and then breaks UNIQUE (tenant, user, key). It is
    rolled back whole and runs once more, when it finds the first one's order and
    answers with it (or 409 if it asked for something else), as it would have had it
    come a moment later.
    """
    if not req.idempotency_key:  # the common case as a batch of one: BEGIN, the caller
        # and products in one round trip, two more for the writes, COMMIT with the last
        with db.transaction() as session:
            placed = place_batch(session, [Entry(req)], ttl_seconds)
        if placed:
            return placed[0]
    for attempt in (1, 2):  # everything else, each error answered as the contract says
        try:
            with db.transaction() as session:
                caller = authenticate(session, req.slug, req.token, "customer")
                order, items = service.create_order(session, caller, req.items,
                                                    ttl_seconds=ttl_seconds,
                                                    idempotency_key=req.idempotency_key)
                return service.order_view(order, items)
        except IntegrityError:
            if attempt == 2 or not req.idempotency_key:
                raise
            log.info("order.idempotency_key_raced")
    raise AssertionError("unreachable")


def place_batch(session: Session, batch: list[Entry[OrderRequest]],
                ttl_seconds: int) -> dict[int, dict[str, Any]]:
    """Place the orders of the batch that can be placed together, ending the caller's
    transaction (its COMMIT goes with their last writes) if any is placed; their views
    by position in `batch` (one alone too: on the kept connection of a group commit, or
    as the first try of `place_alone`). A product short of units raises Conflict for the
    whole batch."""
    by_tenant: dict[int, list[tuple[int, OrderRequest]]] = {}
    for index, entry in enumerate(batch):
        tenant = find_tenant(session, entry.value.slug)
        if tenant is not None and entry.value.token and not entry.value.idempotency_key:
            by_tenant.setdefault(tenant.id, []).append((index, entry.value))
    now = utcnow()
    plan_once(session)  # callers and products by key, rows written by key
    pipeline = Pipeline(session)  # every tenant's callers and products: one round trip
    lookups = {tenant_id: (
        users_by_token_hashes_in(pipeline, tenant_id,
                                 {hash_token(r.token or "") for _, r in requests}),
        products_in(pipeline, tenant_id, sorted({i["product_id"] for _, r in requests
                                                 for i in r.items})))
        for tenant_id, requests in by_tenant.items()}
    pipeline.flush()
    planned: list[tuple[int, service.OrderPlan]] = []
    for tenant_id, requests in by_tenant.items():
        users = {row.token_hash: row for row in lookups[tenant_id][0].rows}
        products = {p.product_id: p for p in lookups[tenant_id][1].rows}
        for index, req in requests:
            user = users.get(hash_token(req.token or ""))
            if user is None or user.role != "customer":
                continue
            try:
                planned.append((index, service.plan_order(
                    tenant_id, user.id, req.items, products, ttl_seconds=ttl_seconds,
                    idempotency_key=None, now=now)))
            except TicketingError:
                continue
    if not planned:
        return {}
    placed = service.place_orders(session, [plan for _, plan in planned], commit=True)
    views = {}
    for (index, _), (order, items) in zip(planned, placed, strict=True):
        with structlog.contextvars.bound_contextvars(**batch[index].context):
            service.log_created(order)
        views[index] = service.order_view(order, items)
    return views


_batchers: weakref.WeakKeyDictionary[Database, GroupCommit[OrderRequest, dict[str, Any]]] = \
    weakref.WeakKeyDictionary()
_made = threading.Lock()


async def place(db: Database, ttl_seconds: int, max_size: int,
                req: OrderRequest) -> dict[str, Any]:
    """Place an order, in a batch with concurrent ones when `max_size` > 1."""
    if max_size <= 1 or req.idempotency_key:
        return await anyio.to_thread.run_sync(place_alone, db, ttl_seconds, req)
    batcher = _batchers.get(db)
    if batcher is None:
        with _made:
            batcher = _batchers.setdefault(db, _batcher(db, ttl_seconds, max_size))
    return await batcher.submit_async(req)


def _batcher(db: Database, ttl_seconds: int,
             max_size: int) -> GroupCommit[OrderRequest, dict[str, Any]]:
    def alone(req: OrderRequest) -> dict[str, Any]:
        return place_alone(db, ttl_seconds, req)

    held = db.held()  # one batch at a time: back to back on one connection

    def together(batch: list[Entry[OrderRequest]]) -> dict[int, dict[str, Any]]:
        with held.transaction() as session:
            return place_batch(session, batch, ttl_seconds)

    return GroupCommit("order", max_size, alone, together, db.writer_turn, held.release,
                       one_together=True)
