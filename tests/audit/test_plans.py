"""Every check stays one pass on SQLite: no table is walked once per row of another.

A joined table looked up without a key, or by `tenant_id` alone, is read in full for
each outer row: the check then costs rows x rows (`item tickets` ran for many minutes
on 50,000 orders). See tests/sqlite_plans.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy.orm import Session

from tests.sqlite_plans import Statements, explain, repeated_scans
from ticketing.audit.checker import CHECKS, check
from ticketing.db import Database


def _statements_of_check(url: str) -> list[tuple[str, tuple]]:
    """The SQL and parameters of every statement `check` runs on `url`."""
    db = Database(url, pool_size=1)
    recorded = Statements(db.engine)
    try:
        with Session(db.engine) as session, session.begin():
            assert check(session) == []
    finally:
        db.dispose()
    return [(sql, params) for sql, params in recorded.seen
            if sql.lstrip().upper().startswith("SELECT")]


def test_no_check_walks_a_table_once_per_row_on_sqlite(sqlite_template: Path,
                                                         tmp_path: Path) -> None:
    path = tmp_path / "plans.db"
    shutil.copy(sqlite_template, path)
    statements = _statements_of_check(f"sqlite:///{path}")
    assert len(statements) == len(CHECKS) + 1  # the tenants' slugs, then one per check
    db = Database(f"sqlite:///{path}", pool_size=1)
    try:
        with db.engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            bad = {}
            names = ["tenant slugs", *(name for name, _, _ in CHECKS)]
            for name, (sql, params) in zip(names, statements, strict=True):
                if scans := repeated_scans(explain(raw, sql, params)):
                    bad[name] = scans
    finally:
        db.dispose()
    assert bad == {}


def test_a_lookup_by_tenant_alone_inside_a_join_is_a_repeated_scan() -> None:
    # The plan `item tickets` had: tickets found by `ix_tickets_order (tenant_id=?)` per item.
    before = [(15, 0, 0, "SCAN order_items USING INDEX ix_order_items_order_id"),
              (18, 0, 0, "SEARCH orders USING INTEGER PRIMARY KEY (rowid=?) LEFT-JOIN"),
              (26, 0, 0, "SEARCH tickets USING INDEX ix_tickets_order (tenant_id=?) LEFT-JOIN"),
              (115, 0, 0, "USE TEMP B-TREE FOR ORDER BY")]
    assert repeated_scans(before) == [
        "SEARCH tickets USING INDEX ix_tickets_order (tenant_id=?) LEFT-JOIN"]
    after = [*before[:2],
             (26, 0, 0, "SEARCH tickets USING INDEX sqlite_autoindex_tickets_2 (order_item_id=?) "
                        "LEFT-JOIN"),
             before[3]]
    assert repeated_scans(after) == []


def test_scans_nested_in_joins_and_correlated_subqueries_are_found() -> None:
    plan = [(3, 0, 0, "MATERIALIZE anon_1"),
            (11, 3, 0, "SCAN refunds"),  # once, to materialize: fine
            (16, 3, 0, "SEARCH orders USING INTEGER PRIMARY KEY (rowid=?)"),
            (64, 0, 0, "SCAN payment_transactions"),
            (81, 0, 0, "SEARCH anon_1 USING AUTOMATIC COVERING INDEX (payment_transaction_id=? "
                       "AND tenant_id=?) LEFT-JOIN"),
            (90, 0, 0, "SCAN anon_2"),  # nested in the scan of payment_transactions
            (95, 0, 0, "CORRELATED SCALAR SUBQUERY 1"),
            (99, 95, 0, "SEARCH tenants USING INTEGER PRIMARY KEY (rowid=?)"),
            (100, 95, 0, "SCAN notifications"),  # once per payment
            (120, 0, 0, "SCALAR SUBQUERY 2"),
            (121, 120, 0, "SCAN products")]  # once: fine
    assert repeated_scans(plan) == ["SCAN anon_2", "SCAN notifications"]
