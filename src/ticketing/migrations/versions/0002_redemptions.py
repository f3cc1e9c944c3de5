"""Redemptions at the gate (accepted and refused scans) and per-tenant ticket signing keys.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "redemptions",
        sa.Column("id", Id, nullable=False),
        sa.Column("tenant_id", Id, nullable=False),
        sa.Column("ticket_id", Id, nullable=True),
        sa.Column("ticket_code", sa.String(length=64), nullable=False),
        sa.Column("entitlement_id", Id, nullable=True),
        sa.Column("entitlement", sa.String(length=32), nullable=False),
        sa.Column("location", sa.String(length=100), nullable=False),
        sa.Column("staff_user_id", Id, nullable=False),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("uses_left", sa.Integer(), nullable=True),
        sa.Column("nonce", sa.String(length=64), nullable=True),
        sa.Column("redeemed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"]),
        sa.ForeignKeyConstraint(["entitlement_id"], ["ticket_entitlements.id"]),
        sa.ForeignKeyConstraint(["staff_user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("redemptions", schema=None) as batch_op:
        batch_op.create_index(
            "uq_redemptions_nonce", ["tenant_id", "ticket_id", "nonce"], unique=True,
            postgresql_where=sa.text("accepted"), sqlite_where=sa.text("accepted"))
        batch_op.create_index("ix_redemptions_tenant_time", ["tenant_id", "redeemed_at"],
                              unique=False)
        batch_op.create_index("ix_redemptions_ticket", ["tenant_id", "ticket_id", "id"],
                              unique=False)

    op.create_table(
        "ticket_signing_keys",
        sa.Column("id", Id, nullable=False),
        sa.Column("tenant_id", Id, nullable=False),
        sa.Column("algorithm", sa.String(length=16), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("private_key", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id"),
    )


def downgrade() -> None:
    op.drop_table("ticket_signing_keys")
    with op.batch_alter_table("redemptions", schema=None) as batch_op:
        batch_op.drop_index("ix_redemptions_ticket")
        batch_op.drop_index("ix_redemptions_tenant_time")
        batch_op.drop_index("uq_redemptions_nonce", postgresql_where=sa.text("accepted"),
                            sqlite_where=sa.text("accepted"))
    op.drop_table("redemptions")
