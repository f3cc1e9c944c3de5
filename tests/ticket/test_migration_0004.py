"""Migration 0004 moves each ticket's entitlements onto its row and back, on both databases.

Tickets issued, scanned and refunded before the upgrade show the same entitlements,
uses, redemptions and scans after it, byte for byte, and can be scanned on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import bindparam, text

from tests.audit.books import refund, violations
from tests.conftest import make_settings
from tests.factories import CUSTOMER, OPERATOR, STAFF, notify, place_order, txn_id
from tests.ticket.helpers import redeem
from ticketing.api.app import create_app
from ticketing.db import Database, make_engine
from ticketing.migrate import alembic_config, upgrade
from ticketing.models import UTCDateTime
from ticketing.tenant.demo import load_demo


@contextmanager
def _service(url: str, tmp_path: Path, *, demo: bool = False) -> Iterator[tuple[Any, Database]]:
    """The app in-process on `url`; every connection closed afterwards."""
    db = Database(url, pool_size=2)
    try:
        if demo:
            with db.transaction() as session:
                load_demo(session)
        with TestClient(create_app(make_settings(url, tmp_path), database=db)) as client:
            yield client, db
    finally:
        db.dispose()


def _sql(url: str, statement: str, **params: Any) -> list[tuple]:
    """One statement past the service, in a transaction of its own; its rows, if any."""
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        stmt = text(statement)
        if "at" in params:
            stmt = stmt.bindparams(bindparam("at", type_=UTCDateTime()))
        with engine.begin() as conn:
            result = conn.execute(stmt, params)
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        engine.dispose()


def _paid(client: Any, items: list[tuple[int, int]]) -> tuple[dict[str, Any], list[str]]:
    order = place_order(client, items=items)
    paid = notify(client, order=order, txn=txn_id())
    assert paid.status_code == 200, paid.text
    return order, [t["ticket_code"] for t in paid.json()["tickets_issued"]]


def _shown(client: Any, codes: list[str], order_ids: list[int]) -> list[bytes]:
    """Everything that shows tickets and scans, as the bytes a client receives."""
    pages = [client.get(f"/tickets/{code}", headers=STAFF) for code in codes]
    pages += [client.get(f"/orders/{oid}", headers=CUSTOMER) for oid in order_ids]
    pages += [client.get("/my/tickets", headers=CUSTOMER),
              client.get("/admin/tenants/default/redemptions", headers=OPERATOR)]
    assert {p.status_code for p in pages} == {200}
    return [p.content for p in pages]


def _entitlements(client: Any, code: str) -> list[tuple[str, int, int]]:
    shown = client.get(f"/tickets/{code}", headers=STAFF).json()
    return [(e["code"], e["uses_total"], e["uses_left"]) for e in shown["entitlements"]]


def test_scanned_and_refunded_tickets_go_down_to_0003_and_up_unchanged(db_url, tmp_path):
    with _service(db_url, tmp_path, demo=True) as (client, _):
        order, (pass_a, pass_b, single) = _paid(client, [(101, 2), (102, 1)])
        assert redeem(client, pass_a, entitlement="ferry").status_code == 200
        assert redeem(client, pass_a, entitlement="metro").status_code == 200
        assert redeem(client, single, entitlement="airport").json()["ticket_status"] == "REDEEMED"
        assert redeem(client, single, entitlement="airport").status_code == 409  # used up
        assert redeem(client, pass_b, entitlement="tram").status_code == 404
        gone, (void,) = _paid(client, [(101, 1)])
        assert redeem(client, void, entitlement="bus").status_code == 200
        assert refund(client, gone["order_id"]).status_code == 200
        codes, order_ids = [pass_a, pass_b, single, void], [order["order_id"], gone["order_id"]]
        before = _shown(client, codes, order_ids)

    command.downgrade(alembic_config(db_url), "0003")
    rows = _sql(db_url, "SELECT t.ticket_code, e.code, e.uses_total, e.uses_left "
                        "FROM ticket_entitlements e JOIN tickets t ON t.id = e.ticket_id "
                        "ORDER BY e.id")
    assert rows == [(pass_a, "metro", 1, 0), (pass_a, "bus", 1, 1), (pass_a, "ferry", 1, 0),
                    (pass_b, "metro", 1, 1), (pass_b, "bus", 1, 1), (pass_b, "ferry", 1, 1),
                    (single, "airport", 1, 0),
                    (void, "metro", 1, 1), (void, "bus", 1, 0), (void, "ferry", 1, 1)]
    links = _sql(db_url, "SELECT r.entitlement, r.accepted, e.code FROM redemptions r "
                         "LEFT JOIN ticket_entitlements e ON e.id = r.entitlement_id ORDER BY r.id")
    assert [(name, bool(accepted), code) for name, accepted, code in links] == [
        ("ferry", True, "ferry"), ("metro", True, "metro"), ("airport", True, "airport"),
        ("airport", False, "airport"), ("tram", False, None), ("bus", True, "bus")]

    upgrade(db_url)
    with _service(db_url, tmp_path) as (client, db):
        assert _shown(client, codes, order_ids) == before
        last = redeem(client, pass_a, entitlement="bus").json()
        assert (last["uses_left"], last["ticket_status"]) == (0, "REDEEMED")
        assert redeem(client, void, entitlement="metro").json()["code"] == "ticket_void"
        assert violations(db) == []


def test_tickets_of_0003_are_filled_from_their_entitlement_rows(db_url, tmp_path):
    """Rows written as the code before 0004 wrote them, in an order of their own."""
    with _service(db_url, tmp_path, demo=True) as (client, _):
        assert client.post("/admin/tenants/default/products", headers=OPERATOR, json={
            "product_id": 500, "name": "Entry only", "price": 100, "stock": 5,
            "entitlements": []}).status_code == 200
        _, (pass_, single, bare) = _paid(client, [(101, 1), (102, 1), (500, 1)])
    command.downgrade(alembic_config(db_url), "0003")
    ticket = {code: _sql(db_url, "SELECT id, tenant_id FROM tickets WHERE ticket_code = :c",
                         c=code)[0] for code in (pass_, single)}
    staff = _sql(db_url, "SELECT id FROM users WHERE role = 'staff'")[0][0]
    _sql(db_url, "DELETE FROM ticket_entitlements")
    for ent_id, code, (name, total, left) in [
            (100, pass_, ("ferry", 2, 1)), (101, pass_, ("metro", 1, 0)),
            (102, pass_, ("bus", 1, 1)), (103, single, ("airport", 1, 0))]:
        _sql(db_url, "INSERT INTO ticket_entitlements (id, tenant_id, ticket_id, code, name, "
                     "uses_total, uses_left) VALUES (:id, :t, :k, :c, :n, :total, :left)",
             id=ent_id, t=ticket[code][1], k=ticket[code][0], c=name, n=name.title(),
             total=total, left=left)
    _sql(db_url, "UPDATE tickets SET status = 'REDEEMED' WHERE ticket_code = :c", c=single)
    at = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    for code, ent_id, name, accepted, reason, left in [
            (pass_, 100, "ferry", True, None, 1), (pass_, 101, "metro", True, None, 0),
            (single, 103, "airport", True, None, 0),
            (single, 103, "airport", False, "entitlement_used_up", None),
            (pass_, None, "tram", False, "entitlement_not_found", None)]:
        _sql(db_url, "INSERT INTO redemptions (tenant_id, ticket_id, ticket_code, entitlement_id, "
                     "entitlement, location, staff_user_id, accepted, reason, uses_left, "
                     "redeemed_at) VALUES (:t, :k, :c, :e, :n, 'Gate 9', :s, :a, :r, :l, :at)",
             t=ticket[code][1], k=ticket[code][0], c=code, e=ent_id, n=name, s=staff,
             a=accepted, r=reason, l=left, at=at)

    upgrade(db_url)
    uses = _sql(db_url, "SELECT ticket_code, status, uses_left FROM tickets ORDER BY id")
    assert uses == [(pass_, "ACTIVE", 2), (single, "REDEEMED", 0), (bare, "ACTIVE", 0)]
    with _service(db_url, tmp_path) as (client, db):
        assert _entitlements(client, pass_) == [("ferry", 2, 1), ("metro", 1, 0), ("bus", 1, 1)]
        assert client.get(f"/tickets/{pass_}", headers=STAFF).json()["entitlements"][0] == {
            "code": "ferry", "name": "Ferry", "uses_total": 2, "uses_left": 1}
        assert _entitlements(client, single) == [("airport", 1, 0)]
        assert _entitlements(client, bare) == []
        shown = client.get(f"/tickets/{pass_}", headers=STAFF).json()["redemptions"]
        assert [r["entitlement"] for r in shown] == ["ferry", "metro"]
        scans = client.get("/admin/tenants/default/redemptions", headers=OPERATOR).json()
        assert sorted((s["entitlement"], s["accepted"], s["reason"])
                      for s in scans["redemptions"]) == [
            ("airport", False, "entitlement_used_up"), ("airport", True, None),
            ("ferry", True, None), ("metro", True, None), ("tram", False, "entitlement_not_found")]
        assert violations(db) == []
        assert redeem(client, pass_, entitlement="metro").json()["code"] == "entitlement_used_up"
        assert redeem(client, pass_, entitlement="ferry").json()["uses_left"] == 0
        assert redeem(client, pass_, entitlement="bus").json()["ticket_status"] == "REDEEMED"
        assert redeem(client, bare, entitlement="metro").json()["code"] == "entitlement_not_found"
        assert violations(db) == []
