"""The WeChat Pay notification path under a database failure at each of its statements.

As tests/stress/test_statement_faults.py for the mock gateway: a TRANSACTION.SUCCESS
notification fails at one statement index, WeChat Pay is answered 5xx with a FAIL
body, nothing changed but the notification kept as `error`, and the same signed
notification sent again is applied exactly once (then answered 204 as a replay).
"""

from __future__ import annotations

import pytest

from tests.audit.books import violations
from tests.factories import CUSTOMER, place_order, product
from tests.payment.wechat.conftest import fake, settings, wechat, wechat_base  # noqa: F401
from tests.payment.wechat.helpers import notifications, payment, send
from tests.stress.test_statement_faults import (
    ITEMS,
    StatementFault,
    _snapshot,
    assert_covered,
    cases,
)

STATEMENTS = {"sqlite": 12, "postgresql": 11}


def test_cases_cover_every_statement(wechat, fake, db, db_url):  # noqa: F811
    order = place_order(wechat, items=ITEMS)
    signed = payment(fake, order)
    with StatementFault(db).armed() as counter:
        assert send(wechat, signed).status_code == 204
    assert_covered(counter, db_url, STATEMENTS)


@pytest.mark.parametrize(("db_url", "index"), cases(STATEMENTS), indirect=["db_url"])
def test_failure_at_statement_rolls_back_and_resend_applies_once(wechat, fake, db, index):  # noqa: F811
    order = place_order(wechat, items=ITEMS)
    before = _snapshot(wechat, order["order_id"])
    signed = payment(fake, order)
    with StatementFault(db, index).armed() as fault:
        failed = send(wechat, signed)
    assert failed.status_code >= 500, (fault.statements[index], failed.text)
    assert failed.json()["code"] == "FAIL"
    assert _snapshot(wechat, order["order_id"]) == before
    assert [n["outcome"] for n in notifications(wechat)] == ["error"], fault.statements[index]
    assert violations(db) == []
    assert send(wechat, signed).status_code == 204
    assert send(wechat, signed).status_code == 204
    assert [n["outcome"] for n in notifications(wechat)] == ["replayed", "processed", "error"]
    assert product(wechat, 101)["sold"] == 2 and product(wechat, 102)["sold"] == 1
    assert len(wechat.get("/my/tickets", headers=CUSTOMER).json()["tickets"]) == 3
    assert violations(db) == []
