"""Schemathesis against the app's own OpenAPI schema: no 5xx, every answer as documented.

Run in-process (`schemathesis.openapi.from_asgi`), one test per operation and database
(sharing one database per kind), with real credentials and the demo tenant so the fuzzer
gets past authentication and reaches the handlers, and again with whatever credentials
it makes up. Fault injection is off (a fuzzer arming fault points would make 500s on
purpose). After the module the invariant checker must pass: whatever the fuzzer
created, paid or refunded, the books still balance.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from tests.audit.books import violations
from tests.conftest import ADMIN_TOKEN, make_settings
from tests.factories import notify, place_order, txn_id
from tests.stress.databases import module_database
from ticketing.api.app import create_app
from ticketing.db import Database
from ticketing.settings import Settings
from ticketing.tenant.demo import load_demo

CHECKS = [not_a_server_error, response_schema_conformance]
FUZZ = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))
FUZZ_MORE = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fuzz_url(request, tmp_path_factory) -> Iterator[str]:
    """One database per kind for the whole module: what one operation's fuzzing creates
    (orders, tickets, tenants) is there for the next to find."""
    yield from module_database(request, tmp_path_factory, "fuzz")


@pytest.fixture(scope="module")
def fuzz_db(fuzz_url) -> Iterator[Database]:
    database = Database(fuzz_url, pool_size=5)
    with database.transaction() as session:
        load_demo(session)
    yield database
    assert violations(database) == []  # whatever the fuzzer did, the books balance
    database.dispose()


def _operations() -> list[str]:
    """Labels ("POST /orders") of every operation, read from a schema that needs no database."""
    probe = Path(tempfile.gettempdir()) / "ticketing-openapi-probe.db"  # never connected to
    app = create_app(Settings(database_url=f"sqlite:///{probe}", log_level="WARNING"))
    return [f"{method.upper()} {path}" for path, ops in app.openapi()["paths"].items()
            for method in ops]


OPERATIONS = _operations()


@pytest.fixture(scope="module")
def api_schema(fuzz_db, fuzz_url, tmp_path_factory):
    settings_ = make_settings(fuzz_url, tmp_path_factory.mktemp("fuzz-app"), fault_injection=False)
    app = create_app(settings_, database=fuzz_db)
    with TestClient(app) as client:  # an unpaid and a paid order for the fuzzer to find
        KNOWN["order_id"] = [place_order(client)["order_id"]]
        paid = place_order(client, items=[(101, 1), (102, 1)])
        body = notify(client, order=paid, txn=txn_id("FUZZ")).json()
        KNOWN["order_id"].append(paid["order_id"])
        KNOWN["ticket_code"] = [t["ticket_code"] for t in body["tickets_issued"]]
    return schemathesis.openapi.from_asgi("/openapi.json", app)


KNOWN: dict[str, list] = {"product_id": [101, 102]}
_turn = itertools.count()


def _aim(values: dict, key: str) -> None:
    """Every other time, replace a generated id with one that exists (else all are 404s)."""
    turn = next(_turn)
    if key in values and KNOWN.get(key) and turn % 2 == 0:
        values[key] = KNOWN[key][turn // 2 % len(KNOWN[key])]


def _credentials(case) -> None:
    """The demo tenant, the token each route expects, and ids that exist half the time."""
    path = case.operation.path
    token = ADMIN_TOKEN if path.startswith("/admin") else (
        "staff123" if path.endswith("/redeem") else "user123")
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}",
                    "X-Tenant-ID": "default"}
    if case.path_parameters:
        if "slug" in case.path_parameters:
            case.path_parameters["slug"] = "default"
        for key in ("order_id", "ticket_code", "product_id"):
            _aim(case.path_parameters, key)
    if isinstance(case.body, dict):
        _aim(case.body, "order_id")
        for item in case.body.get("items") or []:
            if isinstance(item, dict):
                _aim(item, "product_id")


def _fuzz(api_schema, label: str, budget: settings, *, credentials: bool) -> None:
    # schemathesis.pytest.from_fixture does not run under pytest 9 (it reads a removed
    # node attribute), so each operation's strategy is driven by hypothesis directly.
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None, label

    @budget
    @given(case=operation.as_strategy())
    def fuzz(case):
        if credentials:
            _credentials(case)
        case.call_and_validate(checks=CHECKS)

    fuzz()


@pytest.mark.parametrize("label", OPERATIONS)
def test_fuzzed_requests_get_documented_answers(api_schema, label):
    _fuzz(api_schema, label, FUZZ, credentials=True)


@pytest.mark.parametrize("label", OPERATIONS)
def test_fuzzed_requests_without_credentials_never_5xx(api_schema, label):
    _fuzz(api_schema, label, FUZZ, credentials=False)


@pytest.mark.stress
@pytest.mark.parametrize("label", OPERATIONS)
def test_fuzzed_requests_get_documented_answers_many(api_schema, label):
    _fuzz(api_schema, label, FUZZ_MORE, credentials=True)
