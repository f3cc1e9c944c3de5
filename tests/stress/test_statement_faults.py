"""A database failure at any statement of a SUCCESS notification rolls it back whole.

`STATEMENTS` is how many statements the path issues for an order of three units (SQLite
adds its `BEGIN IMMEDIATE`, and moves two products' counters in two statements, not one
executemany; PostgreSQL counts the COMMIT sent with the last pipeline, a failure there
stopping the whole pipeline before it is sent). Each case fails the path at one statement index, checks that nothing changed
and that the notification was kept with outcome `error`, then resends it and checks it is
applied exactly once.
`test_cases_cover_every_statement` fails when the path changes, so the cases follow it.
The path is the one-at-a-time one (`batch_max` 1): with batching on, a notification alone
goes first as a batch of one, and a batch that fails hands it to that path (see
`tests/payment/test_atomicity.py`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event

from tests.audit.books import violations
from tests.conftest import make_settings
from tests.factories import CUSTOMER, OPERATOR, notify, place_order, product, txn_id
from ticketing.db import Database

STATEMENTS = {"sqlite": 12, "postgresql": 12}
ITEMS = [(101, 2), (102, 1)]


@pytest.fixture
def settings(db_url, tmp_path):
    return make_settings(db_url, tmp_path, batch_max=1)


class StatementFault:
    """Counts the statements an engine runs; raises a driver error at index `fail_at`."""

    def __init__(self, db: Database, fail_at: int | None = None, *, repeat: bool = False) -> None:
        self.engine, self.fail_at, self.repeat = db.engine, fail_at, repeat
        self.statements: list[str] = []
        self.error = db.engine.dialect.loaded_dbapi.OperationalError

    def __call__(self, conn, cursor, statement, parameters, context, executemany):
        index = len(self.statements)
        self.statements.append(" ".join(statement.split())[:90])
        if self.fail_at is not None and (index == self.fail_at or (self.repeat and index > self.fail_at)):
            raise self.error(f"injected failure at statement {index}")

    @contextmanager
    def armed(self) -> Iterator[StatementFault]:
        event.listen(self.engine, "before_cursor_execute", self)
        try:
            yield self
        finally:
            event.remove(self.engine, "before_cursor_execute", self)


def _dialect(db_url: str) -> str:
    return "sqlite" if db_url.startswith("sqlite") else "postgresql"


def _snapshot(client, order_id: int) -> tuple:
    detail = client.get(f"/orders/{order_id}", headers=CUSTOMER).json()
    return (detail["status"], detail["payment_status"], detail["tickets"], detail["transaction_id"],
            product(client, 101), product(client, 102),
            client.get("/my/tickets", headers=CUSTOMER).json()["tickets"])


def _kept(client) -> list[tuple[str, int]]:
    rows = client.get("/admin/tenants/default/notifications", headers=OPERATOR).json()
    return [(n["outcome"], n["http_status"]) for n in rows["notifications"]]


def assert_covered(counter: StatementFault, db_url: str, table: dict[str, int]) -> None:
    """The path ran as many statements as there are cases for its dialect."""
    assert len(counter.statements) == table[_dialect(db_url)], "\n".join(
        f"{i}: {s}" for i, s in enumerate(counter.statements))


def cases(table: dict[str, int]) -> list:
    """One (database, statement index) case per statement of the path on each dialect."""
    return [pytest.param(dialect, index, id=f"{dialect}-statement{index:02d}")
            for dialect, count in table.items() for index in range(count)]


def test_cases_cover_every_statement(client, db, db_url):
    order = place_order(client, items=ITEMS)
    with StatementFault(db).armed() as counter:
        assert notify(client, order=order, txn=txn_id()).json()["status"] == "processed"
    assert_covered(counter, db_url, STATEMENTS)


@pytest.mark.parametrize(("db_url", "index"), cases(STATEMENTS), indirect=["db_url"])
def test_failure_at_statement_rolls_back_and_resend_applies_once(client, db, db_url, index):
    order = place_order(client, items=ITEMS)
    before = _snapshot(client, order["order_id"])
    txn = txn_id()
    with StatementFault(db, index).armed() as fault:
        failed = notify(client, order=order, txn=txn)
    assert len(fault.statements) > index
    assert failed.status_code == 500, (fault.statements[index], failed.text)
    assert failed.json()["code"] == "internal_error"
    assert _snapshot(client, order["order_id"]) == before
    assert _kept(client) == [("error", 500)], fault.statements[index]
    assert violations(db) == []
    retry = notify(client, order=order, txn=txn)
    assert retry.status_code == 200 and retry.json()["status"] == "processed"
    assert "replayed" not in retry.json() and len(retry.json()["tickets_issued"]) == 3
    again = notify(client, order=order, txn=txn).json()
    assert again["replayed"] is True and again["tickets_issued"] == retry.json()["tickets_issued"]
    assert product(client, 101)["sold"] == 2 and product(client, 102)["sold"] == 1
    assert len(client.get("/my/tickets", headers=CUSTOMER).json()["tickets"]) == 3
    assert [o for o, _ in _kept(client)] == ["replayed", "processed", "error"]
    assert violations(db) == []


def test_database_down_for_the_whole_request_keeps_nothing_and_resend_applies(client, db):
    """When even the error record fails, the answer is still 500 and nothing is half-done."""
    order = place_order(client, items=ITEMS)
    before = _snapshot(client, order["order_id"])
    txn = txn_id()
    with StatementFault(db, 3, repeat=True).armed():
        failed = notify(client, order=order, txn=txn)
    assert failed.status_code == 500
    assert _snapshot(client, order["order_id"]) == before and _kept(client) == []
    retry = notify(client, order=order, txn=txn)
    assert retry.status_code == 200 and retry.json()["status"] == "processed"
    assert [o for o, _ in _kept(client)] == ["processed"] and violations(db) == []


# PostgreSQL: a COMMIT that fails in the database itself, whichever way it was sent (the
# payment's COMMIT rides with its writes): a deferred constraint trigger runs at COMMIT
_FAIL_AT_COMMIT = [
    "CREATE FUNCTION fail_at_commit() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'injected failure at commit'; END $$",
    "CREATE CONSTRAINT TRIGGER fail_at_commit AFTER INSERT ON payment_transactions "
    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_at_commit()",
]


def test_failure_at_commit_keeps_the_notification_and_resend_applies(client, db):
    order = place_order(client, items=ITEMS)
    before = _snapshot(client, order["order_id"])
    txn = txn_id()
    if db.dialect == "postgresql":
        with db.engine.begin() as conn:
            for sql in _FAIL_AT_COMMIT:
                conn.exec_driver_sql(sql)
        try:
            failed = notify(client, order=order, txn=txn)
        finally:
            with db.engine.begin() as conn:
                conn.exec_driver_sql("DROP TRIGGER fail_at_commit ON payment_transactions")
    else:  # SQLite commits through the driver's commit: fail that one
        commits: list[int] = []
        error = db.engine.dialect.loaded_dbapi.OperationalError

        def fail_first_commit(conn) -> None:
            commits.append(1)
            if len(commits) == 1:
                raise error("injected failure at commit")

        event.listen(db.engine, "commit", fail_first_commit)
        try:
            failed = notify(client, order=order, txn=txn)
        finally:
            event.remove(db.engine, "commit", fail_first_commit)
    assert failed.status_code == 500 and failed.json()["code"] == "internal_error"
    assert _snapshot(client, order["order_id"]) == before
    kept = client.get("/admin/tenants/default/notifications", headers=OPERATOR).json()
    [row] = kept["notifications"]
    # PostgreSQL's COMMIT went with the writes: a failure of the work itself, after the
    # verification, kept with what it found (the demo tenant has no secret); SQLite's
    # fails after the work, where the verification is not known any more
    verified = "not_required" if db.dialect == "postgresql" else "unverified"
    assert (row["outcome"], row["verification"], row["gateway_txn_id"]) == ("error", verified, txn)
    assert "injected failure at commit" in row["detail"]
    retry = notify(client, order=order, txn=txn)
    assert retry.status_code == 200 and retry.json()["status"] == "processed"
    assert violations(db) == []
