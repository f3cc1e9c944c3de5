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

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TENANT_SCOPED = ("orders", "order_items", "order_events", "tickets", "ticket_entitlements",
                 "payment_transactions", "refunds", "notifications", "redemptions")
# (table, column, referred table)
DROPPED = [(table, "tenant_id", "tenants") for table in TENANT_SCOPED] + [
    ("order_items", "product_pk", "products")]
# SQLite keeps foreign keys unnamed; batch mode names them by this convention to drop them.
SQLITE_NAMES = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def _sqlite_name(table: str, column: str, referred: str) -> str:
    return f"fk_{table}_{column}_{referred}"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for table in dict.fromkeys(t for t, _, _ in DROPPED):
            with op.batch_alter_table(table, naming_convention=SQLITE_NAMES) as batch:
                for t, column, referred in DROPPED:
                    if t == table:
                        batch.drop_constraint(_sqlite_name(t, column, referred),
                                              type_="foreignkey")
        return
    inspector = sa.inspect(bind)
    for table, column, referred in DROPPED:
        for fk in inspector.get_foreign_keys(table):
            if fk["constrained_columns"] == [column] and fk["referred_table"] == referred:
                op.drop_constraint(fk["name"], table, type_="foreignkey")


def downgrade() -> None:
    bind = op.get_bind()
    for table, column, referred in DROPPED:
        if bind.dialect.name == "sqlite":
            with op.batch_alter_table(table, naming_convention=SQLITE_NAMES) as batch:
                batch.create_foreign_key(_sqlite_name(table, column, referred), referred,
                                         [column], ["id"])
        else:
            op.create_foreign_key(f"{table}_{column}_fkey", table, referred, [column], ["id"])
