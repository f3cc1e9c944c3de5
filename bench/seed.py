"""The benchmark's tenant, and the requests it sends, built through the service layer.

Tenant `bench` sells three products with stock enough for any run. Orders have 1-3
items, one unit each (shape k buys the first k products), so a payment issues 1-3
tickets. Buyers place orders and pay them; readers each hold one paid 3-ticket order
and read `GET /my/tickets`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from bench.loadgen import render
from ticketing.db import Database
from ticketing.migrate import upgrade
from ticketing.kit.clock import utcnow
from ticketing.models import Order, User
from ticketing.order import service as orders
from ticketing.payment import flows
from ticketing.tenant import service as tenants
from ticketing.tenant.repository import tenant_by_slug

TENANT = "bench"
STOCK = 10**9
PRODUCTS = [
    {"product_id": 101, "name": "3-in-1 Transport Pass", "price": 9900,
     "entitlements": [{"code": "metro", "name": "Metro ride", "uses": 1},
                      {"code": "bus", "name": "Bus ride", "uses": 1},
                      {"code": "ferry", "name": "Ferry crossing", "uses": 1}]},
    {"product_id": 102, "name": "Airport Express Single", "price": 2500,
     "entitlements": [{"code": "airport", "name": "Airport Express ride", "uses": 1}]},
    {"product_id": 103, "name": "Harbour Day Pass", "price": 4000,
     "entitlements": [{"code": "ferry", "name": "Ferry crossing", "uses": 2},
                      {"code": "tram", "name": "Peak tram", "uses": 1}]},
]
SHAPES = [[p["product_id"] for p in PRODUCTS[:k]] for k in (1, 2, 3)]
BUYERS = 1000
READERS = 100


def buyer_token(i: int) -> str:
    return f"bench-buyer-{i:05d}"


def reader_token(i: int) -> str:
    return f"bench-reader-{i:05d}"


def items_of(n: int) -> list[dict[str, int]]:
    """The items of the n-th order a buyer places: shapes 1, 2, 3 in turn."""
    return [{"product_id": pid, "quantity": 1} for pid in SHAPES[n % 3]]


def notify_body(order_id: int, amount: int, txn: str) -> bytes:
    """A mock SUCCESS notification, as the gateway would send it."""
    return json.dumps({"order_id": order_id, "gateway_txn_id": txn, "status": "SUCCESS",
                       "amount": amount}, separators=(",", ":")).encode()


@dataclass
class Bench:
    """A database prepared for the benchmark."""

    url: str
    tenant_id: int

    def database(self) -> Database:
        return Database(self.url, pool_size=2)


def prepare(url: str, *, readers: bool = True) -> Bench:
    """Migrate, then add the tenant, products, users and the readers' paid orders."""
    upgrade(url)
    db = Database(url, pool_size=2)
    try:
        with db.transaction() as session:
            tenant = tenants.create_tenant(session, TENANT, "Bench Transit Co.")
            for spec in PRODUCTS:
                tenants.create_product(session, tenant, stock=STOCK, **spec)
            # one flush for all users (create_user checks each token first: slow here)
            now = utcnow()
            session.add_all(
                [User(tenant_id=tenant.id, name=f"buyer {i}", role="customer",
                      token_hash=tenants.hash_token(buyer_token(i)), created_at=now)
                 for i in range(BUYERS)]
                + [User(tenant_id=tenant.id, name=f"reader {i}", role="customer",
                        token_hash=tenants.hash_token(reader_token(i)), created_at=now)
                   for i in range(READERS)])
            session.flush()
            tenant_id = tenant.id
        if readers:
            paid = create_pending(db, [reader_token(i) for i in range(READERS)], units=3)
            # readers hold one paid 3-ticket order each: GET /my/tickets answers the same size
            for order_id, amount in paid:
                pay(db, order_id, amount, f"BENCH-READER-{order_id}")
    finally:
        db.dispose()
    return Bench(url, tenant_id)


def create_pending(db: Database, tokens: list[str], *, units: int | None = None,
                   batch: int = 500) -> list[tuple[int, int]]:
    """One pending order per token through the service layer (not timed); (id, total).

    Shapes take turns unless `units` fixes how many items (and tickets) each order has.
    """
    made: list[tuple[int, int]] = []
    for start in range(0, len(tokens), batch):
        with db.transaction() as session:
            for n, token in enumerate(tokens[start:start + batch], start):
                caller = tenants.authenticate(session, TENANT, token, "customer")
                items = items_of(n if units is None else units - 1)
                order, _ = orders.create_order(session, caller, items, ttl_seconds=86400)
                made.append((order.id, order.total_amount))
    return made


def pay(db: Database, order_id: int, amount: int, txn: str) -> dict[str, Any]:
    """Apply a SUCCESS notification in-process, as the endpoint does."""
    result = flows.notify_mock(db, TENANT, notify_body(order_id, amount, txn), {})
    if result.http_status != 200 or result.outcome != "processed":
        raise RuntimeError(f"bench payment failed: {result.http_status} {result.body}")
    return result.body


def last_order_id(db: Database) -> int:
    """The highest order id so far (orders placed after it are a run's own)."""
    with db.transaction(readonly=True) as session:
        return session.execute(select(func.coalesce(func.max(Order.id), 0))).scalar_one()


def pending_after(db: Database, tenant_id: int, after: int) -> list[tuple[int, int]]:
    """(id, total) of the tenant's pending orders placed after order `after`."""
    stmt = (select(Order.id, Order.total_amount)
            .where(Order.tenant_id == tenant_id, Order.status == "PENDING", Order.id > after)
            .order_by(Order.id))
    with db.transaction(readonly=True) as session:
        return [(r[0], r[1]) for r in session.execute(stmt)]


HEADERS = {"X-Tenant-ID": TENANT}
Request = tuple[str, str, dict[str, str], bytes | None]


def order_requests() -> list[Request]:
    """POST /orders, buyers and shapes in turn (cycled by the load generator)."""
    return [("POST", "/orders", {**HEADERS, "Authorization": f"Bearer {buyer_token(n % BUYERS)}",
                                 "Content-Type": "application/json"},
             json.dumps({"items": items_of(n)}).encode())
            for n in range(BUYERS * 3)]


def notify_requests(pending: list[tuple[int, int]], tag: str) -> list[Request]:
    """One SUCCESS notification per pending order, each used once."""
    return [("POST", "/payments/notify", {**HEADERS, "Content-Type": "application/json"},
             notify_body(oid, amount, f"BENCH-{tag}-{oid}"))
            for oid, amount in pending]


def ticket_requests() -> list[Request]:
    """GET /my/tickets by each reader in turn (cycled)."""
    return [("GET", "/my/tickets", {**HEADERS, "Authorization": f"Bearer {reader_token(i)}"}, None)
            for i in range(READERS)]


def rendered(requests: list[Request]) -> list[bytes]:
    """The requests as the load generator sends them."""
    return [render(*request) for request in requests]
