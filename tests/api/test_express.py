"""POST /payments/notify and POST /orders take express lanes (api.express): for any
request, a lane answers as the whole FastAPI/Starlette stack would, and counts it the
same way; a notification, and an order its fast path takes, go past Starlette's
exception middleware and router, and an order the fast path declines goes on to the
route as declared."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import starlette.middleware.exceptions
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from tests.factories import CUSTOMER, place_order, txn_id
from ticketing.api.app import create_app
from ticketing.kit.errors import Conflict
from ticketing.payment import batch


@pytest.fixture
def clients(settings, db) -> Iterator[tuple[TestClient, TestClient]]:
    """The service (express lane on) and the same service with the whole stack alone."""
    whole = create_app(settings, database=db)
    whole.express = False
    with TestClient(create_app(settings, database=db), raise_server_exceptions=False) as lane, \
            TestClient(whole, raise_server_exceptions=False) as full:
        yield lane, full


@pytest.fixture
def stack_calls(monkeypatch) -> list[str]:
    """The paths of requests that went through Starlette's exception middleware."""
    calls: list[str] = []
    inner = starlette.middleware.exceptions.ExceptionMiddleware.__call__

    async def counting(self: Any, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            calls.append(scope["path"])
        await inner(self, scope, receive, send)

    monkeypatch.setattr(starlette.middleware.exceptions.ExceptionMiddleware, "__call__",
                        counting)
    return calls


def _body(order: dict[str, Any] | None, **fields: Any) -> bytes:
    base = {"gateway_txn_id": txn_id(), "status": "SUCCESS"}
    if order is not None:
        base.update(order_id=order["order_id"], amount=order["total_amount"])
    return json.dumps({**base, **fields}).encode()


def _answer(response: Any, order: dict[str, Any] | None) -> tuple[Any, ...]:
    """Status, the headers a client sees, and the body with this order's own values
    (its id, its tickets' codes) put aside."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    if isinstance(body, dict) and order is not None:
        if body.get("order_id") == order["order_id"]:
            body["order_id"] = "<order>"
        for ticket in body.get("tickets_issued", ()):
            ticket.pop("ticket_code", None)
    headers = {k: v for k, v in response.headers.items() if k not in ("date", "content-length")}
    return response.status_code, headers, body


CASES = {
    "success": lambda o: (_body(o), {}),
    "amount differs": lambda o: (_body(o, amount=o["total_amount"] + 1), {}),
    "failed": lambda o: (_body(o, status="FAILED"), {}),
    "closed": lambda o: (_body(o, status="CLOSED"), {}),
    "unknown status": lambda o: (_body(o, status="MAYBE"), {}),
    "unknown order": lambda o: (_body(None, order_id=10**9, amount=1), {}),
    "no order id": lambda o: (_body(None, amount=1), {}),
    "not json": lambda o: (b"{", {}),
    "empty": lambda o: (b"", {}),
    "a list": lambda o: (b"[]", {}),
    "bad tenant": lambda o: (_body(o), {"X-Tenant-ID": "Not A Slug"}),
    "unknown tenant": lambda o: (_body(o), {"X-Tenant-ID": "nope"}),
    "bad signature": lambda o: (_body(o), {"X-Mock-Signature": "00" * 32}),
    "text body": lambda o: (_body(o), {"Content-Type": "text/plain"}),
}


@pytest.mark.parametrize("case", CASES)
def test_the_lane_answers_as_the_whole_stack(clients, case):
    """Each case on an order of its own per side, first and second time (a duplicate
    is answered from what the first recorded)."""
    lane, full = clients
    answers = []
    for client in (lane, full):
        order = place_order(client, items=[(101, 2), (102, 1)])
        body, headers = CASES[case](order)
        headers = {"X-Request-ID": f"req-{case}", **headers}
        answers.append([_answer(client.post("/payments/notify", content=body, headers=headers),
                                order) for _ in range(2)])
    assert answers[0] == answers[1]


def test_too_large_and_other_methods_answer_alike(clients, settings):
    lane, full = clients
    big = b"x" * (settings.max_body_bytes + 1)
    for method, body in (("POST", big), ("GET", None), ("PUT", b"{}"), ("DELETE", None)):
        a = lane.request(method, "/payments/notify", content=body, headers={"X-Request-ID": "r"})
        b = full.request(method, "/payments/notify", content=body, headers={"X-Request-ID": "r"})
        assert _answer(a, None) == _answer(b, None), method
    assert _answer(lane.post("/payments/notify/", content=b"{}"), None)[0] == \
        _answer(full.post("/payments/notify/", content=b"{}"), None)[0]


def test_a_notification_takes_the_lane(clients, stack_calls):
    lane, full = clients
    order = place_order(lane)
    stack_calls.clear()
    r = lane.post("/payments/notify", content=_body(order))
    assert r.status_code == 200 and r.json()["status"] == "processed"
    assert stack_calls == []
    # what is not the lane's goes the whole way
    assert lane.get("/my/tickets", headers=CUSTOMER).status_code == 200
    assert lane.get("/payments/notify").status_code == 405
    assert stack_calls == ["/my/tickets", "/payments/notify"]
    # and with the lanes off, a notification does too
    stack_calls.clear()
    assert full.post("/payments/notify", content=_body(place_order(full))).status_code == 200
    assert stack_calls.count("/payments/notify") == 1


def _requests_counted(status_class: str) -> float:
    value = REGISTRY.get_sample_value("ticketing_request_seconds_count", {
        "method": "POST", "route": "/payments/notify", "status": status_class})
    return value or 0.0


@pytest.mark.parametrize("raised, status, code", [
    (Conflict("Notification refused", code="conflict"), 409, "conflict"),
    (RuntimeError("database gone"), 500, "internal_error"),
])
def test_an_error_in_the_endpoint_gets_the_application_handler(clients, monkeypatch, raised,
                                                              status, code):
    """What the endpoint raises is answered by the handler registered for it and counted
    under the route, on either path (the request's log line: tests/api/test_request_log.py)."""
    async def failing(*_args: Any, **_kwargs: Any) -> Any:
        raise raised

    monkeypatch.setattr(batch, "notify_mock", failing)
    answers = []
    for client in clients:
        before = _requests_counted(f"{status // 100}xx")
        r = client.post("/payments/notify", content=b"{}", headers={"X-Request-ID": "boom"})
        assert (r.status_code, r.json()["code"]) == (status, code)
        assert _requests_counted(f"{status // 100}xx") == before + 1
        answers.append(_answer(r, None))
    assert answers[0] == answers[1]
    # a handled error is answered inside the request log, which adds the request id; an
    # unhandled one by the server-error handler outside it, on either path
    assert ("x-request-id" in answers[0][1]) == (status != 500)


ORDER = b'{"items": [{"product_id": 101, "quantity": 1}]}'


@pytest.mark.parametrize("fast, headers, body", [
    (True, {"Content-Type": "application/json", **CUSTOMER}, ORDER),
    (True, {"Content-Type": "application/json", "Authorization": "Bearer nope"}, ORDER),
    (False, {"Content-Type": "text/plain", **CUSTOMER}, ORDER),
    (False, {"Content-Type": "application/json; charset=utf-8", **CUSTOMER}, ORDER),
    (False, {"Content-Type": "application/json", "Authorization": "Token user123"}, ORDER),
    (False, {"Content-Type": "application/json", **CUSTOMER}, b'{"items": []}'),
    (False, {"Content-Type": "application/json", **CUSTOMER}, b"{"),
    (False, {"Content-Type": "application/json", **CUSTOMER, "X-Tenant-ID": "Not A Slug"}, ORDER),
])
def test_an_order_takes_the_lane_and_what_its_fast_path_declines_the_declared_route(
        clients, stack_calls, fast, headers, body):
    """POST /orders (a FastPathRoute): the fast path's answer in the lane, anything it
    declines handed on, body and all, to the route as declared; answered alike both ways."""
    lane, full = clients
    answers = []
    for client in (lane, full):
        stack_calls.clear()
        r = client.post("/orders", content=body, headers={"X-Request-ID": "o", **headers})
        answer = _answer(r, r.json() if r.status_code == 200 else None)
        if r.status_code == 200:  # this order's own number and times
            for key in ("out_trade_no", "created_at", "expires_at"):
                answer[2].pop(key)
        answers.append((answer, stack_calls.count("/orders")))
    (lane_answer, lane_calls), (full_answer, full_calls) = answers
    assert lane_answer == full_answer
    assert (full_calls, lane_calls) == (1, 0 if fast else 1)
