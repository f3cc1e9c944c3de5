"""Every check stays one pass on SQLite: no table is walked once per row of another.

SQLite joins by nested loops. A joined table looked up without a key, or by `tenant_id`
alone (one tenant holds every row), is read in full for each outer row: the check then
costs rows x rows and ran for many minutes on 50,000 orders. The plans are read from
EXPLAIN QUERY PLAN of the statements the checker really runs, so the test needs no
timing and holds however noisy the machine is.
"""

from __future__ import annotations

import re
import shutil
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.orm import Session

from ticketing.audit.checker import CHECKS, check
from ticketing.db import Database

PlanRow = tuple[int, int, int, str]

# The column constraints of a SEARCH, e.g. "(order_item_id=? AND unit_index>?)".
_CONSTRAINTS = re.compile(r"\(([^()]*)\)(?: LEFT-JOIN| RIGHT-JOIN)?$")
_EQUALITY = re.compile(r"(\w+)=\?")
# A table-valued function given its argument (json_each of a column of the outer row):
# it reads that one value, never a table.
_BOUND_FUNCTION = re.compile(r"^SCAN \w+ VIRTUAL TABLE INDEX [1-9][0-9]*:")


def _keyed(detail: str) -> bool:
    """Whether a loop finds its rows by a key: a SEARCH with an equality that is not the
    tenant, or a table-valued function of the outer row's value."""
    if _BOUND_FUNCTION.match(detail):
        return True
    if not detail.startswith("SEARCH "):
        return False
    match = _CONSTRAINTS.search(detail)
    columns = _EQUALITY.findall(match.group(1)) if match else []
    return any(column != "tenant_id" for column in columns)


def repeated_scans(plan: Iterable[PlanRow]) -> list[str]:
    """The loops of an EXPLAIN QUERY PLAN that run once per row of an outer loop unkeyed.

    Siblings in the plan tree are nested loops, outermost first: the first may scan, the
    others run once per row of those before them and must be keyed. Everything under a
    correlated subquery runs once per outer row. Materialized subqueries, the parts of a
    compound query and uncorrelated subqueries run once and start afresh.
    """
    children: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for node, parent, _, detail in plan:
        children[parent].append((node, detail))
    found: list[str] = []

    def walk(parent: int, per_outer_row: bool) -> None:
        loops = 0
        for node, detail in children[parent]:
            if detail.startswith(("SCAN ", "SEARCH ")) and detail != "SCAN CONSTANT ROW":
                if (per_outer_row or loops) and not _keyed(detail):
                    found.append(detail)
                loops += 1
            walk(node, per_outer_row or detail.startswith("CORRELATED "))

    walk(0, False)
    return found


def _statements_of_check(url: str) -> list[tuple[str, tuple]]:
    """The SQL and parameters of every statement `check` runs on `url`."""
    db = Database(url, pool_size=1)
    seen: list[tuple[str, tuple]] = []

    @event.listens_for(db.engine, "before_cursor_execute")
    def _record(_conn, _cursor, statement, parameters, _context, _many) -> None:
        seen.append((statement, tuple(parameters)))

    try:
        with Session(db.engine) as session, session.begin():
            assert check(session) == []
    finally:
        db.dispose()
    return [(sql, params) for sql, params in seen if sql.lstrip().upper().startswith("SELECT")]


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
                plan = raw.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
                if scans := repeated_scans(plan):
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


def test_a_function_of_the_outer_rows_value_is_not_a_repeated_scan() -> None:
    # `ticket uses`: each ticket's entitlements, expanded from its own JSON list.
    plan = [(122, 0, 0, "SCAN tickets USING INDEX ix_tickets_order"),
            (125, 0, 0, "SCAN e VIRTUAL TABLE INDEX 1: LEFT-JOIN"),
            (130, 0, 0, "SCAN f VIRTUAL TABLE INDEX 0: LEFT-JOIN")]  # no argument taken
    assert repeated_scans(plan) == ["SCAN f VIRTUAL TABLE INDEX 0: LEFT-JOIN"]
