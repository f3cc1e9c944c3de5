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

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# (table, column, referred table)
DROPPED = [("tickets", "order_id", "orders"), ("tickets", "order_item_id", "order_items"),
           ("tickets", "user_id", "users"), ("order_events", "order_id", "orders"),
           ("payment_transactions", "order_id", "orders")]
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
    if bind.dialect.name == "sqlite":
        for table in dict.fromkeys(t for t, _, _ in DROPPED):
            with op.batch_alter_table(table, naming_convention=SQLITE_NAMES) as batch:
                for t, column, referred in DROPPED:
                    if t == table:
                        batch.create_foreign_key(_sqlite_name(t, column, referred), referred,
                                                 [column], ["id"])
        return
    for table, column, referred in DROPPED:
        op.create_foreign_key(f"{table}_{column}_fkey", table, referred, [column], ["id"])
