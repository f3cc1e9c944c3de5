"""The schema, in one place. Exactly-once is enforced here, by constraints.

- `payment_transactions`: UNIQUE (tenant, gateway, gateway transaction id): a gateway
  transaction is applied at most once, whatever the code above does; and a partial
  unique index allows one applied successful payment per order.
- `tickets`: UNIQUE (order item, unit index): each unit bought has one ticket slot;
  a CHECK keeps a ticket's uses left from going negative.
- `products`: CHECKs keep stock, reservations and sales from going negative.

Every tenant-owned table carries `tenant_id` and its indexes lead with it, so the
schema can be sharded by tenant (for example a Citus distribution column).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# 64-bit keys on PostgreSQL; SQLite's INTEGER PRIMARY KEY is already 64-bit rowid.
Id = BigInteger().with_variant(Integer(), "sqlite")

# Rows written on every request do not carry a foreign key to these shared parent
# rows (migration 0003). A foreign-key check share-locks the parent row: with many
# transactions at once on one tenant's row, or on a product row that every order of
# it also updates, PostgreSQL turns those locks into multixacts, which cost more than
# the rest of an order (measured: 3.3 -> 1.4 ms of database CPU per order). Tenants
# and products are never deleted, their ids come from rows just read, and
# `ticketing check` verifies every such reference instead.
HOT_PARENTS = {"tenants": "tenant_id", "products": "order_items.product_pk"}

# The rows a payment writes carry no foreign key to their order, its items or its
# buyer either (migration 0005): each key is a trigger that runs a query per row
# and share-locks the parent, a WAL record per order item; together about a sixth
# of the database's CPU per payment. They are written in the transaction that
# locked their order and read its items, from those rows' ids; orders, items and
# users are never deleted; and `ticketing check` verifies each reference, tenant
# included. (table.column -> the table it names)
SERVICE_KEPT = {"tickets.order_id": "orders", "tickets.order_item_id": "order_items",
                "tickets.user_id": "users", "order_events.order_id": "orders",
                "payment_transactions.order_id": "orders"}


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes; always hands back aware UTC (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        if value is not None and dialect.name == "sqlite":
            return value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]


class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("tenant_id", "token_hash"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class GatewayConfig(Base):
    """A tenant's settings for one gateway; `secrets` never leave the service."""

    __tablename__ = "gateway_configs"
    __table_args__ = (UniqueConstraint("tenant_id", "gateway"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    gateway: Mapped[str] = mapped_column(String(16))
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    secrets: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime]


class Product(Base):
    """A product; `stock` is on hand, `reserved` is held by pending orders."""

    __tablename__ = "products"
    __table_args__ = (
        UniqueConstraint("tenant_id", "product_id"),
        CheckConstraint("reserved >= 0", name="ck_products_reserved"),
        CheckConstraint("stock >= reserved", name="ck_products_stock"),
        CheckConstraint("sold >= 0", name="ck_products_sold"),
        CheckConstraint("price >= 0", name="ck_products_price"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    product_id: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(200))
    price: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    stock_loaded: Mapped[int] = mapped_column(BigInteger)
    stock: Mapped[int] = mapped_column(BigInteger)
    reserved: Mapped[int] = mapped_column(BigInteger, default=0)
    sold: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime]


class ProductEntitlement(Base):
    __tablename__ = "product_entitlements"
    __table_args__ = (UniqueConstraint("product_pk", "code"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    product_pk: Mapped[int] = mapped_column(ForeignKey("products.id"))
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    uses: Mapped[int] = mapped_column(Integer)


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("tenant_id", "out_trade_no"),
        UniqueConstraint("tenant_id", "user_id", "idempotency_key"),
        Index("ix_orders_tenant_user", "tenant_id", "user_id", "id"),
        Index(
            "ix_orders_pending_expiry",
            "expires_at",
            postgresql_where=text("status = 'PENDING'"),
            sqlite_where=text("status = 'PENDING'"),
        ),
        Index(
            "ix_orders_needs_refund",
            "tenant_id",
            postgresql_where=text("needs_refund"),
            sqlite_where=text("needs_refund"),
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(Id)  # no FK: see HOT_PARENTS
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    out_trade_no: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    payment_status: Mapped[int] = mapped_column(Integer)
    total_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    gateway: Mapped[str | None] = mapped_column(String(16))
    transaction_id: Mapped[str | None] = mapped_column(String(64))
    paid_at: Mapped[datetime | None]
    needs_refund: Mapped[bool] = mapped_column(Boolean, default=False)
    refund_reason: Mapped[str | None] = mapped_column(String(200))
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class OrderItem(Base):
    __tablename__ = "order_items"
    __table_args__ = (CheckConstraint("quantity > 0", name="ck_order_items_quantity"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(Id)  # no FK: see HOT_PARENTS
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    product_pk: Mapped[int] = mapped_column(Id)  # no FK: see HOT_PARENTS
    product_id: Mapped[int] = mapped_column(BigInteger)
    product_name: Mapped[str] = mapped_column(String(200))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)


class OrderEvent(Base):
    """Every payment-status transition asked for, allowed or refused."""

    __tablename__ = "order_events"
    __table_args__ = (Index("ix_order_events_order", "tenant_id", "order_id", "id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(Id)  # no FK: see HOT_PARENTS
    order_id: Mapped[int] = mapped_column(Id)  # no FK: see SERVICE_KEPT
    from_state: Mapped[int] = mapped_column(Integer)
    to_state: Mapped[int] = mapped_column(Integer)
    accepted: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]


class Ticket(Base):
    """One unit bought. It carries its own copy of the product's entitlements.

    `entitlements` is the product's list as it was when the ticket was issued, in the
    product's order: [{"code", "name", "uses_total", "uses_left"}, ...]; changing the
    product later changes no ticket already sold. `uses_left` is their uses left in
    total: a scan takes one use by rewriting both under the row lock, compare-and-set
    on `uses_left`, and the CHECK keeps it from going below zero.
    """

    __tablename__ = "tickets"
    __table_args__ = (
        UniqueConstraint("order_item_id", "unit_index"),
        Index("ix_tickets_tenant_user", "tenant_id", "user_id", "id"),
        Index("ix_tickets_order", "tenant_id", "order_id"),
        CheckConstraint("uses_left >= 0", name="ck_tickets_uses_left"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(Id)  # no FK: see HOT_PARENTS
    order_id: Mapped[int] = mapped_column(Id)  # no FK: see SERVICE_KEPT
    order_item_id: Mapped[int] = mapped_column(Id)  # no FK: see SERVICE_KEPT
    unit_index: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[int] = mapped_column(Id)  # no FK: see SERVICE_KEPT
    ticket_code: Mapped[str] = mapped_column(String(32), unique=True)
    product_id: Mapped[int] = mapped_column(BigInteger)
    product_name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    issued_at: Mapped[datetime]
    voided_at: Mapped[datetime | None]
    entitlements: Mapped[list[dict[str, Any]]] = mapped_column(JSON, server_default=text("'[]'"))
    uses_left: Mapped[int] = mapped_column(Integer, server_default=text("0"))


class PaymentTransaction(Base):
    """A gateway transaction as first applied; its answer is replayed to duplicates."""

    __tablename__ = "payment_transactions"
    __table_args__ = (
        UniqueConstraint("tenant_id", "gateway", "gateway_txn_id"),
        Index(
            "uq_payment_one_success_per_order",
            "order_id",
            unique=True,
            postgresql_where=text("applied"),
            sqlite_where=text("applied"),
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(Id)  # no FK: see HOT_PARENTS
    gateway: Mapped[str] = mapped_column(String(16))
    gateway_txn_id: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[int] = mapped_column(Id)  # no FK: see SERVICE_KEPT
    amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(16))
    # True for the one successful payment that paid the order (see the partial index).
    applied: Mapped[bool] = mapped_column(Boolean, default=False)
    refunded: Mapped[bool] = mapped_column(Boolean, default=False)
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]


class Refund(Base):
    __tablename__ = "refunds"
    __table_args__ = (
        UniqueConstraint("tenant_id", "out_refund_no"),
        Index("ix_refunds_order", "tenant_id", "order_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(Id)  # no FK: see HOT_PARENTS
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"))
    payment_transaction_id: Mapped[int] = mapped_column(ForeignKey("payment_transactions.id"))
    gateway: Mapped[str] = mapped_column(String(16))
    out_refund_no: Mapped[str] = mapped_column(String(64))
    gateway_refund_id: Mapped[str | None] = mapped_column(String(64))
    amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Notification(Base):
    """Every payment notification received, with what became of it."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_tenant", "tenant_id", "id"),
        Index("ix_notifications_tenant_outcome", "tenant_id", "outcome", "id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(Id)  # no FK: see HOT_PARENTS
    gateway: Mapped[str] = mapped_column(String(16))
    event_type: Mapped[str] = mapped_column(String(48))
    gateway_txn_id: Mapped[str | None] = mapped_column(String(64))
    order_id: Mapped[int | None] = mapped_column(BigInteger)
    amount: Mapped[int | None] = mapped_column(BigInteger)
    trade_status: Mapped[str | None] = mapped_column(String(32))
    verification: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(16))
    http_status: Mapped[int] = mapped_column(Integer)
    detail: Mapped[str | None] = mapped_column(Text)
    headers: Mapped[dict[str, Any]] = mapped_column(JSON)
    body: Mapped[str] = mapped_column(Text)
    # The request id every log line of this notification's processing carries.
    request_id: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime]


class Redemption(Base):
    """Every scan of a ticket at a gate, accepted or refused: who, where, when, what.

    A partial unique index allows one accepted use per client nonce and ticket, so a
    gate that retries a scan cannot use an entitlement twice.
    """

    __tablename__ = "redemptions"
    __table_args__ = (
        Index(
            "uq_redemptions_nonce",
            "tenant_id", "ticket_id", "nonce",
            unique=True,
            postgresql_where=text("accepted"),
            sqlite_where=text("accepted"),
        ),
        Index("ix_redemptions_tenant_time", "tenant_id", "redeemed_at"),
        Index("ix_redemptions_ticket", "tenant_id", "ticket_id", "id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(Id)  # no FK: see HOT_PARENTS
    # NULL when the scanned code names no ticket of this tenant.
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    ticket_code: Mapped[str] = mapped_column(String(64))
    entitlement: Mapped[str] = mapped_column(String(32))
    location: Mapped[str] = mapped_column(String(100))
    staff_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    accepted: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(String(32))
    # The entitlement's uses left right after an accepted scan (replayed to retries).
    uses_left: Mapped[int | None] = mapped_column(Integer)
    nonce: Mapped[str | None] = mapped_column(String(64))
    redeemed_at: Mapped[datetime]


class TicketSigningKey(Base):
    """A tenant's Ed25519 key pair for signed ticket codes; the private half never leaves."""

    __tablename__ = "ticket_signing_keys"
    __table_args__ = (UniqueConstraint("tenant_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    algorithm: Mapped[str] = mapped_column(String(16))
    public_key: Mapped[str] = mapped_column(String(64))
    private_key: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
