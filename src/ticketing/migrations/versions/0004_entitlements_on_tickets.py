"""Each ticket keeps its entitlements on its own row; `ticket_entitlements` goes.

A paid notification wrote one `ticket_entitlements` row (and two index entries) per
entitlement of every ticket: about a third of the database's work per payment. The
list now lives in `tickets.entitlements` (JSON, in the product's order) beside
`tickets.uses_left`, their uses left in total, which a scan decrements by
compare-and-set and a CHECK keeps from going negative.

Existing tickets are filled from their rows in one set-based UPDATE, in the rows' id
order (the order they were copied in). Redemptions already name the entitlement by
code, so `redemptions.entitlement_id` goes with the table it pointed at.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# One UPDATE for all tickets: each ticket's rows as a JSON list in id order, and their sum.
BACKFILL = {
    "postgresql": """
        UPDATE tickets AS t SET entitlements = e.list, uses_left = e.uses_left
        FROM (SELECT ticket_id,
                     json_agg(json_build_object('code', code, 'name', name,
                                                'uses_total', uses_total, 'uses_left', uses_left)
                              ORDER BY id) AS list,
                     sum(uses_left) AS uses_left
              FROM ticket_entitlements GROUP BY ticket_id) AS e
        WHERE t.id = e.ticket_id""",
    # SQLite before 3.44 has no ORDER BY inside an aggregate; a window's ORDER BY does
    # fix the order in which the frame (here the whole partition) is fed to it.
    "sqlite": """
        UPDATE tickets SET entitlements = e.list, uses_left = e.uses_left
        FROM (SELECT ticket_id, list, uses_left FROM (
                SELECT ticket_id,
                       json_group_array(json_object('code', code, 'name', name,
                                                    'uses_total', uses_total,
                                                    'uses_left', uses_left))
                           OVER (PARTITION BY ticket_id ORDER BY id
                                 ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
                           AS list,
                       sum(uses_left) OVER (PARTITION BY ticket_id) AS uses_left,
                       row_number() OVER (PARTITION BY ticket_id ORDER BY id) AS n
                FROM ticket_entitlements) WHERE n = 1) AS e
        WHERE tickets.id = e.ticket_id""",
}

# The way back: one row per element of each ticket's list, in list order.
UNFOLD = {
    "postgresql": """
        INSERT INTO ticket_entitlements (tenant_id, ticket_id, code, name, uses_total, uses_left)
        SELECT t.tenant_id, t.id, e.value ->> 'code', e.value ->> 'name',
               (e.value ->> 'uses_total')::int, (e.value ->> 'uses_left')::int
        FROM tickets AS t, json_array_elements(t.entitlements) WITH ORDINALITY AS e(value, n)
        ORDER BY t.id, e.n""",
    "sqlite": """
        INSERT INTO ticket_entitlements (tenant_id, ticket_id, code, name, uses_total, uses_left)
        SELECT t.tenant_id, t.id, json_extract(e.value, '$.code'), json_extract(e.value, '$.name'),
               json_extract(e.value, '$.uses_total'), json_extract(e.value, '$.uses_left')
        FROM tickets AS t, json_each(t.entitlements) AS e
        ORDER BY t.id, e.key""",
}
# Scans that named an entitlement the ticket has (accepted, or refused as used up) point
# at it again, as they did before.
RELINK = """
    UPDATE redemptions SET entitlement_id = (
        SELECT te.id FROM ticket_entitlements AS te
        WHERE te.ticket_id = redemptions.ticket_id AND te.code = redemptions.entitlement)
    WHERE ticket_id IS NOT NULL AND (accepted OR reason = 'entitlement_used_up')"""


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    # A constant default: no table rewrite on PostgreSQL, no table copy on SQLite
    # (whose ALTER TABLE takes a column CHECK but cannot add a table constraint).
    op.add_column("tickets", sa.Column("entitlements", sa.JSON(), nullable=False,
                                       server_default=sa.text("'[]'")))
    if dialect == "sqlite":
        op.execute("ALTER TABLE tickets ADD COLUMN uses_left INTEGER DEFAULT 0 NOT NULL "
                   "CONSTRAINT ck_tickets_uses_left CHECK (uses_left >= 0)")
    else:
        op.add_column("tickets", sa.Column("uses_left", sa.Integer(), nullable=False,
                                           server_default=sa.text("0")))
        op.create_check_constraint("ck_tickets_uses_left", "tickets", "uses_left >= 0")
    op.execute(BACKFILL[dialect])
    with op.batch_alter_table("redemptions") as batch:  # SQLite: the table is rebuilt
        batch.drop_column("entitlement_id")
    op.drop_table("ticket_entitlements")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "ticket_entitlements",
        sa.Column("id", Id, nullable=False),
        sa.Column("tenant_id", Id, nullable=False),
        sa.Column("ticket_id", Id, nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("uses_total", sa.Integer(), nullable=False),
        sa.Column("uses_left", sa.Integer(), nullable=False),
        sa.CheckConstraint("uses_left >= 0 AND uses_left <= uses_total", name="ck_te_uses"),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ticket_id", "code"),
    )
    op.execute(UNFOLD[dialect])
    if dialect == "sqlite":  # a nullable column may come with its REFERENCES: no table copy
        op.execute("ALTER TABLE redemptions ADD COLUMN entitlement_id INTEGER "
                   "REFERENCES ticket_entitlements (id)")
    else:
        op.add_column("redemptions", sa.Column("entitlement_id", Id, nullable=True))
        op.create_foreign_key("redemptions_entitlement_id_fkey", "redemptions",
                              "ticket_entitlements", ["entitlement_id"], ["id"])
    op.execute(RELINK)
    if dialect == "sqlite":
        # A table copy: a later migration's copy of `tickets` (0005) made the column
        # CHECK a table constraint, which SQLite's DROP COLUMN refuses.
        with op.batch_alter_table("tickets") as batch:
            batch.drop_constraint("ck_tickets_uses_left", type_="check")
            batch.drop_column("uses_left")
            batch.drop_column("entitlements")
    else:
        op.drop_constraint("ck_tickets_uses_left", "tickets", type_="check")
        op.drop_column("tickets", "uses_left")
        op.drop_column("tickets", "entitlements")
