"""Notifications applied together (payment/batch.py) keep every promise of one at a time.

The batch takes only first-seen SUCCESS notifications for pending orders; everything
else is left to the one-at-a-time path after the batch commits, and must end exactly
as if the batch had not existed. Bursts against real servers check the same under
real concurrency, with duplicates inside and across batches.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import shutil
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from tests.audit.books import violations
from tests.conftest import make_settings
from tests.sqlite_lock import Holder, writer_lock_held
from tests.wire import client_messages, exchanges, since_last_begin
from tests.factories import CUSTOMER, OPERATOR, notify, place_order, product, txn_id
from ticketing.api.app import create_app
from ticketing.db import Database
from ticketing.order import batch as order_batch
from ticketing.order.batch import OrderRequest
from ticketing.payment import batch, flows
from ticketing.kit.batching import Entry
from ticketing.payment.batch import MockNotification, apply_batch
from ticketing.tenant.demo import load_demo


def _waiting(body: dict | bytes, tenant: str = "default") -> Entry[MockNotification]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Entry(MockNotification(tenant, raw, {"content-type": "application/json"}),
                 context={"request_id": "req"})


def _success(order: dict, txn: str, **over) -> dict:
    return {"order_id": order["order_id"], "gateway_txn_id": txn, "status": "SUCCESS",
            "amount": order["total_amount"], **over}


def test_a_batch_applies_the_common_case_and_leaves_the_rest_to_the_single_path(client, db):
    a, b, c, e = (place_order(client, items=[(101, 2), (102, 1)]) for _ in range(4))
    paid = place_order(client, items=[(101, 1)])
    assert notify(client, order=paid, txn=txn_id()).status_code == 200
    single = place_order(client, items=[(101, 1), (102, 1)])
    assert notify(client, order=single, txn=txn_id()).status_code == 200
    single_path_entitlements = {t["product_id"]: t["entitlements"] for t in client.get(
        f"/orders/{single['order_id']}", headers=CUSTOMER).json()["tickets"]}
    stock_before = product(client, 101)
    ta, tb = txn_id(), txn_id()
    batch = [
        _waiting(_success(a, ta)),
        _waiting(_success(b, tb)),
        _waiting(_success(a, txn_id())),          # a second payment of A: not with A's first
        _waiting(_success(b, tb)),                # B's duplicate: a replay, after B commits
        _waiting(_success(c, txn_id(), amount=1)),  # wrong amount: a conflict
        _waiting(_success(e, txn_id(), status="FAILED")),
        _waiting(_success(paid, txn_id())),       # an order already paid: needs a refund
        _waiting(b"{not json"),
    ]
    with db.transaction() as session:
        results = apply_batch(session, batch)
    assert sorted(results) == [0, 1]
    for index, order in enumerate((a, b)):
        result = results[index]
        assert (result.http_status, result.outcome, result.order_id) == (200, "processed",
                                                                        order["order_id"])
        assert result.body["status"] == "processed" and len(result.body["tickets_issued"]) == 3
        assert result.notification_id is not None

    rest = [flows.notify_mock(db, "default", e.value.raw, e.value.headers) for e in batch[2:]]
    assert [(r.http_status, r.outcome) for r in rest] == [
        (200, "needs_refund"), (200, "replayed"), (409, "conflict"), (200, "failed"),
        (200, "needs_refund"), (422, "rejected")]
    assert rest[1].body["tickets_issued"] == results[1].body["tickets_issued"]

    for order, result in zip((a, b), (results[0], results[1]), strict=True):
        detail = client.get(f"/orders/{order['order_id']}", headers=CUSTOMER).json()
        assert detail["status"] == "PAID" and detail["payment_status"] == 2
        assert sorted(t["ticket_code"] for t in detail["tickets"]) == sorted(
            t["ticket_code"] for t in result.body["tickets_issued"])
        for ticket in detail["tickets"]:  # copied as the one-at-a-time path copies them
            assert ticket["entitlements"] and ticket["entitlements"] == single_path_entitlements[
                ticket["product_id"]]
    after = product(client, 101)
    assert after["sold"] == stock_before["sold"] + 4
    assert after["reserved"] == stock_before["reserved"] - 4
    kept = client.get("/admin/tenants/default/notifications", headers=OPERATOR,
                      params={"order_id": a["order_id"]}).json()["notifications"]
    assert sorted(n["outcome"] for n in kept) == ["needs_refund", "processed"]
    # kept with the request id of the request that brought it, not of the batch's runner
    assert [n["request_id"] for n in kept if n["outcome"] == "processed"] == ["req"]
    assert violations(db) == []


def test_a_batch_goes_to_the_database_in_two_round_trips(client, db, db_url):
    """Secrets with the locks, recorded transactions, items and their entitlements; every
    write. The same statements on either database; on PostgreSQL, those two round trips,
    BEGIN going out with the first and COMMIT with the second."""
    orders = [place_order(client, items=[(101, 1), (102, 1)]) for _ in range(3)]
    batch = [_waiting(_success(o, txn_id())) for o in orders]

    def apply() -> dict:
        with db.transaction() as session:
            return apply_batch(session, batch)

    assert len(_few_round_trips(db, db_url, apply, 2, plan_once=True)) == 3
    assert violations(db) == []


def _few_round_trips(db, db_url: str, work, round_trips: int, *, plan_once: bool = False):
    """`work()`'s result, once its statements are checked: secrets; orders, recorded
    transactions, items, entitlements; tickets, events, transactions, notifications,
    products. On PostgreSQL those go in `round_trips` round trips, BEGIN with the first
    and COMMIT with the last, which checks the row counts of its two UPDATEs itself
    (`WITH changed AS (UPDATE …) SELECT ticketing_expect_rows(…)`); with `plan_once`
    (`kit.sql.plan_once`, a batch's transaction), the BEGIN has its SET LOCAL with it."""
    seen: list[str] = []

    def statement(_conn, _cursor, sql, *_args) -> None:
        seen.append(sql.split()[0])

    event.listen(db.engine, "before_cursor_execute", statement)
    try:
        if db_url.startswith("sqlite"):
            result, kinds = work(), None
        else:
            with client_messages(db) as sent:
                result = work()
            kinds = since_last_begin(sent)
    finally:
        event.remove(db.engine, "before_cursor_execute", statement)
    statements = [s for s in seen if s != "BEGIN"]  # SQLite's BEGIN IMMEDIATE is a statement
    if kinds is None:
        assert statements == ["SELECT"] * 5 + ["UPDATE"] + ["INSERT"] * 4 + ["UPDATE"], seen
    else:
        assert statements == (["SET"] * plan_once + ["SELECT"] * 5 + ["WITH"] + ["INSERT"] * 4
                              + ["WITH"] + ["COMMIT"]), seen
    if kinds is not None:
        assert exchanges(kinds) == round_trips, " ".join(kinds)
        assert kinds.count("Query") == 0, " ".join(kinds)  # BEGIN and COMMIT are pipelined
        last = [m for m in sent if m.startswith("Parse")][-1]
        assert '"COMMIT"' in last and sent.index(last) > len(sent) - 8, sent[-8:]
    return result


def test_a_batch_spanning_tenants_applies_each_to_its_own_orders(client, db):
    """Orders are locked and read tenant by tenant; a tenant never reaches another's order."""
    client.post("/admin/tenants", headers=OPERATOR, json={"slug": "acme", "name": "Acme"})
    client.post("/admin/tenants/acme/products", headers=OPERATOR, json={
        "product_id": 101, "name": "Acme Pass", "price": 700, "stock": 10,
        "entitlements": [{"code": "tram", "name": "Tram", "uses": 1}]})
    client.post("/admin/tenants/acme/users", headers=OPERATOR,
                json={"name": "Ann", "role": "customer", "token": "acme-ann"})
    acme = {"Authorization": "Bearer acme-ann", "X-Tenant-ID": "acme"}
    ours = [place_order(client) for _ in range(2)]
    theirs = [place_order(client, headers=acme, items=[(101, 2)]) for _ in range(2)]
    shared = txn_id()  # the same gateway id in two tenants: two transactions
    batch = [_waiting(_success(ours[0], shared)), _waiting(_success(theirs[0], shared), "acme"),
             _waiting(_success(theirs[1], txn_id()), "acme"),
             _waiting(_success(ours[1], txn_id()), "acme")]  # names default's order
    with db.transaction() as session:
        results = apply_batch(session, batch)
    assert sorted(results) == [0, 1, 2]
    assert [len(results[i].body["tickets_issued"]) for i in range(3)] == [1, 2, 2]
    alone = flows.notify_mock(db, "acme", batch[3].value.raw, batch[3].value.headers)
    assert (alone.http_status, alone.outcome) == (404, "not_found")
    assert client.get(f"/orders/{ours[1]['order_id']}", headers=CUSTOMER).json()["status"] == "PENDING"
    for order in theirs:
        assert client.get(f"/orders/{order['order_id']}", headers=acme).json()["status"] == "PAID"
    assert product(client, 101, "acme")["sold"] == 4
    assert violations(db) == []


def test_a_batch_of_nothing_batchable_writes_nothing(client, db):
    order = place_order(client)
    batch = [_waiting(_success(order, txn_id(), status="FAILED")), _waiting(b"[]")]
    with db.transaction() as session:
        assert apply_batch(session, batch) == {}
    detail = client.get(f"/orders/{order['order_id']}", headers=CUSTOMER).json()
    assert detail["payment_status"] == 0
    kept = client.get("/admin/tenants/default/notifications", headers=OPERATOR).json()
    assert kept["notifications"] == []


def test_a_forged_notification_in_a_batch_is_left_out_and_does_not_shadow_the_genuine_one(
        client, db):
    """The secret is read in the same round trip as the orders: verification comes after
    the reads, and only then is one notification per order kept. A forgery ahead of the
    genuine notification for the same order must not take its place."""
    secret = "batch-secret"
    assert client.put("/admin/tenants/default/gateways/mock", headers=OPERATOR,
                      json={"secret": secret}).status_code == 200
    a, b = (place_order(client) for _ in range(2))

    def signed(body: dict, signature: str | None = None) -> Entry[MockNotification]:
        raw = json.dumps(body).encode()
        entry = _waiting(raw)
        entry.value.headers["x-mock-signature"] = signature or hmac.new(
            secret.encode(), raw, hashlib.sha256).hexdigest()
        return entry

    txn_a = txn_id()
    entries = [signed(_success(a, txn_a), "0" * 64), signed(_success(a, txn_a)),
               signed(_success(b, txn_id()))]
    with db.transaction() as session:
        answers = apply_batch(session, entries)
    assert sorted(answers) == [1, 2]  # the forgery is left to the one-at-a-time path
    assert {answers[i].outcome for i in (1, 2)} == {"processed"}
    kept = client.get("/admin/tenants/default/notifications", headers=OPERATOR).json()
    assert sorted(n["verification"] for n in kept["notifications"]) == ["verified"] * 2
    forged = flows.notify_mock(db, "default", entries[0].value.raw, entries[0].value.headers)
    assert (forged.http_status, forged.outcome) == (401, "rejected")
    assert violations(db) == []


def _burst(base_url: str, bodies: list[dict]) -> list[httpx.Response]:
    barrier = Barrier(len(bodies))

    def send(body: dict) -> httpx.Response:
        with httpx.Client(base_url=base_url, timeout=60) as c:
            barrier.wait()
            return c.post("/payments/notify", json=body)

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(send, bodies))


def _sqlite_url(tmp_path) -> str:
    from ticketing.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'burst.db'}"
    upgrade(url)
    return url


@pytest.fixture(params=["postgresql", "sqlite"])
def burst_url(request, tmp_path):
    if request.param == "sqlite":
        return _sqlite_url(tmp_path)
    return request.getfixturevalue("pg_url")


def test_a_burst_with_duplicates_is_applied_once_per_order(burst_url, live_server_factory):
    server = live_server_factory(burst_url, workers=2, TICKETING_LOG_LEVEL="INFO")
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        orders = [c.post("/orders", headers=CUSTOMER,
                         json={"items": [{"product_id": 101, "quantity": 1},
                                         {"product_id": 102, "quantity": 1}]}).json()
                  for _ in range(24)]
    bodies = [_success(o, txn_id()) for o in orders]
    responses = _burst(server.base_url, bodies + bodies)  # each twice, all at once
    assert [r.status_code for r in responses] == [200] * len(responses)
    by_order: dict[int, list[dict]] = {}
    for r in responses:
        by_order.setdefault(r.json()["order_id"], []).append(r.json())
    for answers in by_order.values():
        assert sorted(bool(a.get("replayed")) for a in answers) == [False, True]
        assert answers[0]["tickets_issued"] == answers[1]["tickets_issued"]
        assert len(answers[0]["tickets_issued"]) == 2
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        p101 = c.get("/admin/tenants/default/products/101", headers=OPERATOR).json()
        assert (p101["sold"], p101["reserved"]) == (24, 0)
    db = Database(burst_url, pool_size=1)
    try:
        assert violations(db) == []
    finally:
        db.dispose()
    log = server.log_path.read_text()
    assert '"batch.applied"' in log  # the burst did go through batches
    # each payment applied in a batch can be followed by its ids, from its arrival on
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    applied = [x for x in lines if x["event"] == "notification.handled" and x.get("batched")]
    assert applied
    kept = {(r.json()["order_id"]) for r in responses}
    for handled in applied:
        assert handled["order_id"] in kept and handled["tenant"] == "default"
        steps = [x["event"] for x in lines if x.get("request_id") == handled["request_id"]]
        assert steps[:3] == ["notification.received", "order.state_changed",
                             "notification.handled"], steps
        for x in lines:
            if x.get("request_id") == handled["request_id"] and x["event"] != "request":
                assert {k: x.get(k) for k in ("tenant_id", "order_id", "notification_id",
                                              "gateway_txn_id")} == {
                    k: handled[k] for k in ("tenant_id", "order_id", "notification_id",
                                            "gateway_txn_id")}


def test_a_failure_inside_a_batch_rolls_all_of_it_back(pg_url, live_server_factory):
    server = live_server_factory(pg_url, workers=1, TICKETING_LOG_LEVEL="INFO",
                                 TICKETING_FAULT_INJECTION="true")
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        orders = [c.post("/orders", headers=CUSTOMER,
                         json={"items": [{"product_id": 101, "quantity": 2}]}).json()
                  for _ in range(16)]
        armed = c.post("/admin/faults", headers=OPERATOR,
                       json={"point": "tickets.after_entitlements", "times": 1})
        assert armed.status_code == 200
    bodies = [_success(o, txn_id()) for o in orders]
    responses = _burst(server.base_url, bodies)
    failed = [b for b, r in zip(bodies, responses, strict=True) if r.status_code != 200]
    log = server.log_path.read_text()
    # the fault hit a batch (rolled back, its notifications then applied one at a time)
    # or a notification that arrived alone (answered 500, to be sent again)
    assert ('"batch.failed"' in log) != (len(failed) == 1)
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        for body in failed:  # the gateway sends it again
            assert c.post("/payments/notify", json=body).status_code == 200
        for o in orders:
            detail = c.get(f"/admin/tenants/default/orders/{o['order_id']}",
                           headers=OPERATOR).json()
            assert detail["status"] == "PAID" and len(detail["tickets"]) == 2
    db = Database(pg_url, pool_size=1)
    try:
        assert violations(db) == []
    finally:
        db.dispose()


def test_one_notification_alone_takes_the_same_few_round_trips(client, db, db_url):
    """The one-at-a-time path applies the common case as a batch of one: the tenant's
    secret (BEGIN with it), the locks and lookups, the writes (COMMIT with them); its
    duplicate, which
    that path leaves to `handle_notice`, still replays the first answer."""
    order = place_order(client, items=[(101, 1), (102, 1)])
    lone = _waiting(_success(order, txn_id())).value
    first = _few_round_trips(db, db_url,
                             lambda: flows.notify_mock(db, "default", lone.raw, lone.headers), 3)
    assert (first.http_status, first.outcome) == (200, "processed")
    assert len(first.body["tickets_issued"]) == 2
    again = flows.notify_mock(db, "default", lone.raw, lone.headers)
    assert (again.http_status, again.outcome) == (200, "replayed")
    assert again.body["tickets_issued"] == first.body["tickets_issued"]
    assert violations(db) == []


async def _queued_behind(first: Coroutine[Any, Any, Any], rest: list[Coroutine[Any, Any, Any]],
                         holder: Holder) -> list[Any]:
    """`first`, then `rest` while its batch waits for the writer lock `holder` holds."""
    head = asyncio.ensure_future(first)
    await asyncio.sleep(0.3)  # its batch is taken, or waits at its gate to be taken
    tail = [asyncio.ensure_future(c) for c in rest]
    await asyncio.sleep(0.3)
    holder.release()
    return await asyncio.gather(head, *tail)


def test_on_sqlite_what_arrives_while_another_process_writes_joins_one_batch(
        tmp_path, sqlite_template):
    """A SQLite file has one writer at a time. A batch waiting for another process's
    writer takes what arrived meanwhile: one transaction for all of it, not one for
    the first arrival and another for the rest."""
    path = tmp_path / "turns.db"
    shutil.copy(sqlite_template, path)
    settings = make_settings(f"sqlite:///{path}", tmp_path)
    db = Database(settings.database_url, pool_size=5)
    with db.transaction() as session:
        load_demo(session)
    with TestClient(create_app(settings, database=db)) as client:
        paid = [place_order(client, items=[(101, 1)]) for _ in range(6)]
    commits: list[int] = []
    event.listen(db.engine, "commit", lambda _conn: commits.append(1))

    def payment(order: dict) -> Coroutine[Any, Any, Any]:
        raw = json.dumps(_success(order, txn_id())).encode()
        return batch.notify_mock(db, 16, "default", raw, {})

    with writer_lock_held(path) as holder:
        results = asyncio.run(_queued_behind(payment(paid[0]),
                                             [payment(o) for o in paid[1:]], holder))
    assert [(r.http_status, r.outcome) for r in results] == [(200, "processed")] * 6
    assert len(commits) == 1

    def order() -> Coroutine[Any, Any, Any]:
        return order_batch.place(db, 900, 16, OrderRequest("default", "user123",
                                                           [{"product_id": 101, "quantity": 1}],
                                                           None))

    commits.clear()
    with writer_lock_held(path) as holder:
        views = asyncio.run(_queued_behind(order(), [order() for _ in range(5)], holder))
    assert [v["status"] for v in views] == ["PENDING"] * 6
    assert len(commits) == 1
    assert violations(db) == []
    db.dispose()
