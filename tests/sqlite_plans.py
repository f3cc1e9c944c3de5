"""Reading SQLite's EXPLAIN QUERY PLAN: which loops find their rows by a key, which read all.

SQLite joins by nested loops. A loop that finds its rows without a key, or by
`tenant_id` alone (one tenant may hold every row), reads a whole table each time it
runs: once per row of an outer loop, once per statement on a path run per request.
Either way the cost grows with the table. Tests read the plans of the statements the
service really sends, with their parameters, so they need no timing.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Engine, event

from ticketing.models import Base

PlanRow = tuple[int, int, int, str]

# The column constraints of a SEARCH, e.g. "(order_item_id=? AND unit_index>?)".
_CONSTRAINTS = re.compile(r"\(([^()]*)\)(?: LEFT-JOIN| RIGHT-JOIN)?$")
_EQUALITY = re.compile(r"(\w+)=\?")
_INSERT_INTO = re.compile(r"^\s*INSERT\s+INTO\s+\"?(\w+)", re.IGNORECASE)
# A table-valued function given its argument (json_each of a column of the outer row):
# it reads that one value, never a table.
_BOUND_FUNCTION = re.compile(r"^SCAN \w+ VIRTUAL TABLE INDEX [1-9][0-9]*:")


def keyed(detail: str) -> bool:
    """Whether a loop finds its rows by a key: a SEARCH with an equality that is not the
    tenant, or a table-valued function of the outer row's value."""
    if _BOUND_FUNCTION.match(detail):
        return True
    if not detail.startswith("SEARCH "):
        return False
    match = _CONSTRAINTS.search(detail)
    columns = _EQUALITY.findall(match.group(1)) if match else []
    return any(column != "tenant_id" for column in columns)


def _is_loop(detail: str) -> bool:
    return (detail.startswith(("SCAN ", "SEARCH "))
            and not re.fullmatch(r"SCAN (\d+ )?CONSTANT ROWS?", detail))


def _tree(plan: Iterable[PlanRow]) -> dict[int, list[tuple[int, str]]]:
    children: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for node, parent, _, detail in plan:
        children[parent].append((node, detail))
    return children


def repeated_scans(plan: Iterable[PlanRow]) -> list[str]:
    """The loops of a plan that run once per row of an outer loop without a key.

    Siblings in the plan tree are nested loops, outermost first: the first may scan, the
    others run once per row of those before them and must be keyed. Everything under a
    correlated subquery runs once per outer row. Materialized subqueries, the parts of a
    compound query and uncorrelated subqueries run once and start afresh.
    """
    children = _tree(plan)
    found: list[str] = []

    def walk(parent: int, per_outer_row: bool) -> None:
        loops = 0
        for node, detail in children[parent]:
            if _is_loop(detail):
                if (per_outer_row or loops) and not keyed(detail):
                    found.append(detail)
                loops += 1
            walk(node, per_outer_row or detail.startswith("CORRELATED "))

    walk(0, False)
    return found


def foreign_key_children(table: str) -> set[str]:
    """The tables with a foreign key to `table`."""
    return {child.name for child in Base.metadata.sorted_tables
            for fk in child.foreign_keys if fk.column.table.name == table}


def unkeyed_loops(sql: str, plan: Iterable[PlanRow]) -> list[str]:
    """Every loop of a statement's plan that reads rows without a key.

    An INSERT's plan also lists a scan of each table with a foreign key to the one
    written: SQLite runs it only while a foreign-key violation is pending (to see if
    the new row resolves it), never for a row inserted into healthy books.
    """
    target = _INSERT_INTO.match(sql)
    guards = foreign_key_children(target.group(1)) if target else set()
    return [detail for _, _, _, detail in plan
            if _is_loop(detail) and not keyed(detail)
            and not (detail.startswith("SCAN ") and detail.split()[1] in guards)]


class Statements:
    """Every statement an engine sends while recording, with its parameters."""

    def __init__(self, engine: Engine) -> None:
        self.seen: list[tuple[str, Any]] = []
        event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, _conn: Any, _cursor: Any, statement: str, parameters: Any,
                _context: Any, executemany: bool) -> None:
        # executemany sends a list of rows; SQLAlchemy's multi-row INSERT sends one
        # flat row under the same flag
        if executemany and parameters and isinstance(parameters[0], (tuple, list, dict)):
            parameters = parameters[0]
        self.seen.append((statement, parameters))


def explain(dbapi_connection: Any, sql: str, params: Any) -> list[PlanRow]:
    """EXPLAIN QUERY PLAN of one statement, with its parameters."""
    return dbapi_connection.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
