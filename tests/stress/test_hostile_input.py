"""Hostile input against a live server: huge, endless, slow and half-sent bodies, borrowed
tokens and other tenants' ids. Each gets a 4xx (or a closed connection), never holds a
worker, never shows another tenant's data, and leaves the books unchanged."""

from __future__ import annotations

import select
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import func, select as sql_select

from tests.audit.books import violations
from tests.conftest import LiveServer
from tests.factories import CUSTOMER, OPERATOR, STAFF
from tests.stress.databases import module_database
from ticketing.db import Database
from ticketing.tenant.demo import load_demo
from ticketing.models import (
    Notification,
    Order,
    PaymentTransaction,
    Product,
    Refund,
    Ticket,
)

BODY_TIMEOUT = 1.0
MAX_BODY = 65536


def _connect(base_url: str) -> socket.socket:
    parts = urlsplit(base_url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _head(path: str, *extra: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: test", "Content-Type: application/json",
             "X-Tenant-ID: default", *extra, "", ""]
    return "\r\n".join(lines).encode()


def _answer(sock: socket.socket, within: float) -> tuple[int | None, float]:
    """(status, seconds) of the answer, or (None, seconds) if the server just closed."""
    started, data = time.monotonic(), b""
    sock.settimeout(within)
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    elapsed = time.monotonic() - started
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else None
    return status, elapsed


def _books(db: Database) -> dict[str, int]:
    """Row counts of everything a request could change."""
    with db.transaction(readonly=True) as session:
        counts = {m.__tablename__: session.scalar(sql_select(func.count()).select_from(m))
                  for m in (Order, Ticket, PaymentTransaction, Refund, Notification)}
        counts["stock"] = session.scalar(sql_select(func.sum(Product.stock + Product.reserved)))
        counts["uses_left"] = session.scalar(sql_select(func.sum(Ticket.uses_left)))
    return counts


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live(request, tmp_path_factory):
    """One two-worker server per database kind, with short body limits, for the module."""
    databases = module_database(request, tmp_path_factory, "hostile")
    url = next(databases)
    db = Database(url, pool_size=2)
    with db.transaction() as session:
        load_demo(session)
    server = LiveServer(url, tmp_path_factory.mktemp("hostile-server"), 2,
                        TICKETING_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
                        TICKETING_MAX_BODY_BYTES=str(MAX_BODY)).start()
    yield server, db
    server.stop()
    db.dispose()
    next(databases, None)  # drops the database


@pytest.fixture
def hostile(live):
    """The shared server; the books must be the same after the test as before."""
    server, db = live
    before = _books(db)
    yield server, db
    assert _books(db) == before
    assert violations(db) == []


@pytest.mark.parametrize("path", ["/payments/notify", "/orders"])
def test_huge_content_length_is_refused_before_the_body(hostile, path):
    server, _ = hostile
    with _connect(server.base_url) as sock:
        sock.sendall(_head(path, "Content-Length: 10000000000", "Authorization: Bearer user123"))
        sock.sendall(b'{"order_id": 1, ')  # the body never comes
        status, elapsed = _answer(sock, within=5)
    assert status == 413 and elapsed < BODY_TIMEOUT, (status, elapsed)


@pytest.mark.parametrize("path", ["/payments/notify", "/orders"])
def test_endless_chunked_body_is_refused_after_the_limit(hostile, path):
    server, _ = hostile
    chunk = b"4000\r\n" + b"x" * 0x4000 + b"\r\n"
    sent, status = 0, None
    with _connect(server.base_url) as sock:
        sock.sendall(_head(path, "Transfer-Encoding: chunked", "Authorization: Bearer user123"))
        while sent < 64 * 1024 * 1024:  # a thousand times the limit, if nobody stops it
            if select.select([sock], [], [], 0)[0]:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        status, _ = _answer(sock, within=5)
    assert status in (413, None), status  # None: refused and closed before we read it
    assert sent < 16 * 1024 * 1024, f"the server read {sent} bytes of a body over {MAX_BODY}"


def _stalled(base_url: str, path: str, trickle: float | None) -> tuple[int | None, float]:
    """Headers and part of a body, then nothing more (or a byte every `trickle` s)."""
    with _connect(base_url) as sock:
        sock.sendall(_head(path, "Content-Length: 2000", "Authorization: Bearer user123"))
        sock.sendall(b'{"order_id": ')
        if trickle is None:
            return _answer(sock, within=BODY_TIMEOUT + 5)
        started = time.monotonic()
        while time.monotonic() - started < BODY_TIMEOUT + 5:
            if select.select([sock], [], [], trickle)[0]:
                break
            try:
                sock.sendall(b" ")
            except (BrokenPipeError, ConnectionResetError):
                break
        status, _ = _answer(sock, within=1)
        return status, time.monotonic() - started


@pytest.mark.parametrize("trickle", [None, BODY_TIMEOUT / 3], ids=["stalled", "trickled"])
def test_slow_or_half_sent_body_is_cut_off_and_holds_no_worker(hostile, trickle):
    server, _ = hostile
    # More stalled clients than a worker has threads for, then an ordinary request.
    socks = []
    for _ in range(50):
        sock = _connect(server.base_url)
        sock.sendall(_head("/payments/notify", "Content-Length: 2000") + b'{"order_id": ')
        socks.append(sock)
    started = time.monotonic()
    assert httpx.get(server.base_url + "/readyz", timeout=5).status_code == 200
    assert time.monotonic() - started < BODY_TIMEOUT
    status, elapsed = _stalled(server.base_url, "/payments/notify", trickle)
    assert status in (408, None) and elapsed < BODY_TIMEOUT + 2, (status, elapsed)
    for sock in socks:
        assert _answer(sock, within=BODY_TIMEOUT + 5)[0] in (408, None)
        sock.close()


def _other_tenant(c: httpx.Client) -> dict:
    """A second tenant with a customer, staff, and a paid order of its own."""
    assert c.post("/admin/tenants", headers=OPERATOR, json={"slug": "other", "name": "Other"}
                  ).status_code == 200
    assert c.post("/admin/tenants/other/products", headers=OPERATOR, json={
        "product_id": 101, "name": "Other Pass", "price": 500, "stock": 10,
        "entitlements": [{"code": "metro", "name": "Metro", "uses": 1}]}).status_code == 200
    for role, token in (("customer", "other-user"), ("staff", "other-staff")):
        assert c.post("/admin/tenants/other/users", headers=OPERATOR,
                      json={"name": role, "role": role, "token": token}).status_code == 200
    headers = {"X-Tenant-ID": "other", "Authorization": "Bearer other-user"}
    order = c.post("/orders", headers=headers,
                   json={"items": [{"product_id": 101, "quantity": 1}]}).json()
    paid = c.post("/payments/notify", headers={"X-Tenant-ID": "other"}, json={
        "order_id": order["order_id"], "gateway_txn_id": "OTHER-1", "status": "SUCCESS",
        "amount": order["total_amount"]}).json()
    return {"order": order, "ticket": paid["tickets_issued"][0]["ticket_code"]}


def test_borrowed_tokens_and_other_tenants_ids_get_401_or_404(live):
    server, db = live
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        other = _other_tenant(c)
        oid, code = other["order"]["order_id"], other["ticket"]
        before = _books(db)
        as_other = {"X-Tenant-ID": "other"}
        probes = [
            (401, "GET", "/my/tickets", {**as_other, **CUSTOMER}, None),  # default's token
            (401, "POST", "/orders", {**as_other, **CUSTOMER},
             {"items": [{"product_id": 101, "quantity": 1}]}),
            (404, "GET", f"/orders/{oid}", CUSTOMER, None),  # other's order, default's user
            (404, "GET", f"/tickets/{code}", CUSTOMER, None),
            (404, "GET", f"/tickets/{code}/qr", CUSTOMER, None),
            (404, "POST", f"/tickets/{code}/redeem", STAFF, {"entitlement": "metro",
                                                             "location": "Gate 1"}),
            (404, "POST", f"/orders/{oid}/pay", CUSTOMER, {"gateway": "mock"}),
            (404, "GET", f"/admin/tenants/default/orders/{oid}", OPERATOR, None),
            (404, "POST", f"/admin/tenants/default/orders/{oid}/refund", OPERATOR, None),
            (404, "POST", "/payments/notify", {}, {"order_id": oid, "gateway_txn_id": "OTHER-2",
                                                   "status": "SUCCESS", "amount": 500}),
            (404, "GET", "/my/tickets", {"X-Tenant-ID": "nobody", **CUSTOMER}, None),
            (404, "GET", "/my/tickets", {"X-Tenant-ID": "../other", **CUSTOMER}, None),
            (401, "GET", "/my/tickets", {"Authorization": "Bearer other-user"}, None),
            (401, "GET", "/my/tickets", {"Authorization": "Basic dXNlcjEyMw=="}, None),
            (401, "GET", "/admin/tenants/other/orders/1", CUSTOMER, None),
            (401, "GET", f"/admin/tenants/other/orders/{oid}", {"Authorization": "Bearer other-staff"},
             None),
        ]
        for status, method, path, headers, body in probes:
            r = c.request(method, path, headers=headers, json=body)
            assert r.status_code == status, (method, path, headers, r.text)
            assert code not in r.text and other["order"]["out_trade_no"] not in r.text, r.text
            assert set(r.json()) >= {"error", "code"}, r.text
    after = _books(db)
    assert after.pop("notifications") == before.pop("notifications") + 1  # the 404 is kept
    assert after == before
    with db.transaction(readonly=True) as session:
        kept = session.scalars(sql_select(Notification).order_by(Notification.id.desc())).first()
        assert (kept.outcome, kept.http_status, kept.gateway_txn_id) == ("not_found", 404, "OTHER-2")
    assert violations(db) == []
