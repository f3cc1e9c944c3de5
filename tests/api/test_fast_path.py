"""POST /orders has a fast path (api.lean.FastPathRoute) beside its declared one: for
any request, both answer the same, and the fast path is the one a well-formed request
takes."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import fastapi.routing
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import product
from ticketing.api.app import create_app
from ticketing.api.errors import install_error_handlers
from ticketing.order.endpoints import create_order
from ticketing.order.schemas import OrderOut

GOOD = {"Content-Type": "application/json", "Authorization": "Bearer user123"}
ITEMS = b'{"items": [{"product_id": 101, "quantity": 1}]}'
_keys = itertools.count(1)


def _declared(settings: Any, db: Any) -> FastAPI:
    """An app whose POST /orders is the endpoint as declared, an ordinary route,
    with the service's error handlers and state."""
    app = FastAPI()
    app.state.settings, app.state.db = settings, db
    install_error_handlers(app)
    app.add_api_route("/orders", create_order, methods=["POST"], response_model=OrderOut)
    return app


@pytest.fixture
def clients(settings, db) -> Iterator[tuple[TestClient, TestClient]]:
    with TestClient(create_app(settings, database=db), raise_server_exceptions=False) as fast, \
            TestClient(_declared(settings, db), raise_server_exceptions=False) as declared:
        yield fast, declared


@pytest.fixture
def declared_calls(monkeypatch) -> list[int]:
    """Counts FastAPI's dependency solving: each request the declared path handles."""
    calls: list[int] = []
    solve = fastapi.routing.solve_dependencies

    async def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return await solve(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    return calls


def _comparable(response: Any) -> tuple[int, Any]:
    """Status and body, without what differs between two orders placed alike."""
    body = response.json()
    if response.status_code == 200:
        body = {k: v for k, v in body.items()
                if k not in ("order_id", "out_trade_no", "created_at", "expires_at")}
    return response.status_code, body


def test_a_well_formed_order_takes_the_fast_path(clients, declared_calls):
    fast, _ = clients
    for headers in (GOOD, {**GOOD, "X-Tenant-ID": "default"},
                    {**GOOD, "Idempotency-Key": "k" * 128}, {**GOOD, "Idempotency-Key": ""}):
        r = fast.post("/orders", content=ITEMS, headers=headers)
        assert r.status_code == 200, r.text
    assert declared_calls == []
    # the errors the fast path still gives itself: from placing the order, not from input
    r = fast.post("/orders", content=ITEMS, headers={**GOOD, "Authorization": "Bearer nope"})
    assert (r.status_code, r.json()["code"]) == (401, "unauthorized")
    r = fast.post("/orders", content=b'{"items": [{"product_id": 999, "quantity": 1}]}',
                  headers=GOOD)
    assert r.status_code == 404
    assert declared_calls == []
    # and what it does not take goes through FastAPI's handling, which this counts
    r = fast.post("/orders", content=ITEMS, headers={**GOOD, "Authorization": "Token user123"})
    assert (r.status_code, declared_calls) == (401, [1])


@pytest.mark.parametrize("headers, body", [
    ({**GOOD, "Content-Type": "text/plain"}, ITEMS),
    ({"Authorization": "Bearer user123"}, ITEMS),                     # no content type
    ({**GOOD, "Content-Type": "application/json; charset=utf-8"}, ITEMS),
    ({**GOOD, "X-Tenant-ID": "Not A Slug"}, ITEMS),
    ({**GOOD, "Authorization": "Token user123"}, ITEMS),
    ({"Content-Type": "application/json"}, ITEMS),                    # no token
    ({**GOOD, "Idempotency-Key": "k" * 129}, ITEMS),
    (GOOD, b"{"), (GOOD, b""), (GOOD, b'{"items": []}'),
])
def test_anything_else_goes_to_the_declared_path(clients, headers, body):
    fast, declared = clients
    assert _comparable(fast.post("/orders", content=body, headers=headers)) == \
        _comparable(declared.post("/orders", content=body, headers=headers))


_ids = st.sampled_from([101, 102, 999, 0, -1, 2**53, 2**53 + 1, "101", 1.0, True, None])
_quantities = st.sampled_from([1, 2, 0, 100, 101, -1, 1.5, 1.0, "1", True, None])
_item = st.fixed_dictionaries({}, optional={
    "product_id": _ids, "quantity": _quantities, "extra": st.sampled_from([1, "x", None])})
_body = st.one_of(
    st.fixed_dictionaries({"items": st.lists(_item, max_size=3)},
                          optional={"other": st.integers()}).map(json.dumps),
    st.lists(_item, max_size=2).map(json.dumps),
    st.sampled_from(['{"items": [{"product_id": 101, "quantity": 1}], "items": []}',
                     '{"items": [{"product_id": 101, "quantity": 1, "quantity": 2}]}',
                     ' {"items":[{"product_id":101,"quantity":1}]} ', "null", "[]", "{",
                     '{"items": [{"product_id": 101, "quantity": 1}]} x',
                     '{"items": [{"product_id": NaN, "quantity": 1}]}', ""]))
_headers = st.fixed_dictionaries({}, optional={
    "Content-Type": st.sampled_from(["application/json", "text/plain", "APPLICATION/JSON",
                                     "application/json; charset=utf-8",
                                     "application/merge-patch+json"]),
    "Authorization": st.sampled_from(["Bearer user123", "bearer user123", "Bearer  user123 ",
                                      "Bearer", "Bearer ", "Token user123", "Bearer nope",
                                      "Bearer staff123", ""]),
    "X-Tenant-ID": st.sampled_from(["default", " default ", "", "Default", "nope",
                                    "bad slug!", "a" * 65]),
    "Idempotency-Key": st.sampled_from(["", "k", "k" * 128, "k" * 129]),
})


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(headers=_headers, body=_body)
def test_both_paths_answer_any_request_alike(clients, headers, body):
    """Any mix of headers and bodies, well formed or not: the same status and answer
    (and, for an order placed, the same order but for its id, number and times)."""
    fast, declared = clients
    if headers.get("Idempotency-Key") in ("k", "k" * 128):  # a key of this example alone
        headers = {**headers, "Idempotency-Key": f"{headers['Idempotency-Key'][:120]}{next(_keys)}"}
    first = fast.post("/orders", content=body.encode(), headers=headers)
    second = declared.post("/orders", content=body.encode(), headers=headers)
    assert _comparable(first) == _comparable(second), (headers, body)


def test_the_fast_path_holds_stock_as_the_declared_one(clients):
    fast, declared = clients
    before = product(fast, 101)["reserved"]
    assert fast.post("/orders", content=ITEMS, headers=GOOD).status_code == 200
    assert declared.post("/orders", content=ITEMS, headers=GOOD).status_code == 200
    assert product(fast, 101)["reserved"] == before + 2
