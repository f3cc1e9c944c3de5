"""Rows written on every request keep no foreign key to tenants or products.

A foreign-key check share-locks the parent row; many transactions at once on one
tenant's row (every insert names it) or on a product row (which every order also
updates) make PostgreSQL build multixacts, the largest database cost of an order.
Tenants and products are never deleted; `ticketing check` verifies the references.
See models.HOT_PARENTS.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 03:00:00
"""

from __future__ import annotations

from ticketing.migrate import add_foreign_keys, drop_foreign_keys

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TENANT_SCOPED = ("orders", "order_items", "order_events", "tickets", "ticket_entitlements",
                 "payment_transactions", "refunds", "notifications", "redemptions")
# (table, column, referred table)
DROPPED = [(table, "tenant_id", "tenants") for table in TENANT_SCOPED] + [
    ("order_items", "product_pk", "products")]


def upgrade() -> None:
    drop_foreign_keys(DROPPED)


def downgrade() -> None:
    add_foreign_keys(DROPPED)
