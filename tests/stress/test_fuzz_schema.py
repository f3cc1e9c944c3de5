"""Schemathesis against the app's own OpenAPI schema: no 5xx, every answer as documented.

Run in-process (`schemathesis.openapi.from_asgi`), one test per operation and database,
with real credentials and the demo tenant so the fuzzer gets past authentication and
reaches the handlers. Fault injection is off (a fuzzer arming fault points would make
500s on purpose). After each operation's examples the invariant checker must pass:
whatever the fuzzer created, paid or refunded, the books still balance.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from tests.audit.books import violations
from tests.conftest import ADMIN_TOKEN, make_settings
from ticketing.api.app import create_app
from ticketing.db import Database
from ticketing.settings import Settings
from ticketing.tenant.demo import load_demo

CHECKS = [not_a_server_error, response_schema_conformance]
FUZZ = settings(max_examples=20, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))
FUZZ_MORE = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture
def fuzz_db(db_url) -> Iterator[Database]:
    database = Database(db_url, pool_size=5)
    with database.transaction() as session:
        load_demo(session)
    yield database
    assert violations(database) == []
    database.dispose()


def _operations() -> list[str]:
    """Labels ("POST /orders") of every operation, read from a schema that needs no database."""
    probe = Path(tempfile.gettempdir()) / "ticketing-openapi-probe.db"  # never connected to
    app = create_app(Settings(database_url=f"sqlite:///{probe}", log_level="WARNING"))
    return [f"{method.upper()} {path}" for path, ops in app.openapi()["paths"].items()
            for method in ops]


OPERATIONS = _operations()


@pytest.fixture
def api_schema(fuzz_db, db_url, tmp_path):
    app = create_app(make_settings(db_url, tmp_path, fault_injection=False), database=fuzz_db)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def _credentials(case) -> None:
    """The demo tenant and the token each route expects (the fuzzer keeps everything else)."""
    path = case.operation.path
    token = ADMIN_TOKEN if path.startswith("/admin") else (
        "staff123" if path.endswith("/redeem") else "user123")
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}",
                    "X-Tenant-ID": "default"}
    if case.path_parameters and "slug" in case.path_parameters:
        case.path_parameters["slug"] = "default"


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
