"""A function that fails a statement when a write changed a row count other than expected.

A transaction's last pipeline carries its COMMIT (`kit.sql.Pipeline.flush(commit=True)`),
so a write whose row count must be checked (an UPDATE guarded by a lock, a compare-and-set
of stock) is checked by the database, before that COMMIT:

    WITH changed AS (UPDATE … RETURNING 1)
    SELECT ticketing_expect_rows(count(*), 1, 'orders') FROM changed

A different count raises SQLSTATE TK001; the pipeline's later commands, the COMMIT
among them, are then skipped, and the transaction rolls back whole. PostgreSQL only:
SQLite runs in-process and checks counts before its COMMIT as before.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 20:40:00
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

CREATE = """
CREATE FUNCTION ticketing_expect_rows(changed bigint, expected bigint, what text)
RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    IF changed IS DISTINCT FROM expected THEN
        RAISE EXCEPTION '% rows written where % were expected (%)', changed, expected, what
            USING ERRCODE = 'TK001';
    END IF;
    RETURN changed;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(CREATE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION ticketing_expect_rows(bigint, bigint, text)")
