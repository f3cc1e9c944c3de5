"""The rows a payment writes keep no foreign key to the order, its items or its buyer.

A paid notification inserts a ticket per unit bought, an order event and a payment
transaction. Each foreign key on them is a trigger that runs a query per row and
share-locks the parent row: the order item (a WAL record for each), the buyer, the
order. Measured on the benchmark's notifications: about a sixth of the database's
CPU per payment. Every such row is written in the transaction that locked its order
and read its items, from their ids; orders, items and users are never deleted; and
`ticketing check` verifies every reference (same tenant too, which the keys never
did). See models.SERVICE_KEPT.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 18:00:00
"""

from __future__ import annotations

from ticketing.migrate import add_foreign_keys, drop_foreign_keys

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# (table, column, referred table)
DROPPED = [("tickets", "order_id", "orders"), ("tickets", "order_item_id", "order_items"),
           ("tickets", "user_id", "users"), ("order_events", "order_id", "orders"),
           ("payment_transactions", "order_id", "orders")]


def upgrade() -> None:
    drop_foreign_keys(DROPPED)


def downgrade() -> None:
    add_foreign_keys(DROPPED)
