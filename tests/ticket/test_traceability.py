"""From a ticket to its order, payment and uses; the operator's list of scans. Both databases."""

from datetime import UTC, datetime

from sqlalchemy import update

from tests.factories import CUSTOMER, OPERATOR, STAFF
from tests.ticket.helpers import new_user, paid_ticket, redeem, scans
from ticketing.models import Redemption


def test_a_ticket_shows_its_order_payment_and_redemptions(client):
    ticket = paid_ticket(client)
    redeem(client, ticket["code"], entitlement="ferry", location="Pier 1")
    redeem(client, ticket["code"], entitlement="metro", location="Gate 3")
    for headers in (CUSTOMER, STAFF):
        shown = client.get(f"/tickets/{ticket['code']}", headers=headers)
        assert shown.status_code == 200
        body = shown.json()
        assert body["order_id"] == ticket["order_id"]
        assert body["payment"]["gateway"] == "mock"
        assert body["payment"]["transaction_id"] == ticket["txn"]
        assert body["payment"]["paid_at"].endswith("+00:00")
        assert [(r["entitlement"], r["location"]) for r in body["redemptions"]] == [
            ("ferry", "Pier 1"), ("metro", "Gate 3")]
        assert body["redemptions"][0]["id"] < body["redemptions"][1]["id"]
    order = client.get(f"/orders/{ticket['order_id']}", headers=CUSTOMER).json()
    assert order["transaction_id"] == ticket["txn"]
    assert [r["entitlement"] for r in order["tickets"][0]["redemptions"]] == ["ferry", "metro"]
    mine = client.get("/my/tickets", headers=CUSTOMER).json()["tickets"]
    assert len(mine[0]["redemptions"]) == 2


def test_another_customer_cannot_see_the_ticket(client):
    code = paid_ticket(client)["code"]
    stranger = new_user(client, name="Stranger", role="customer")
    r = client.get(f"/tickets/{code}", headers=stranger["headers"])
    assert r.status_code == 404 and r.json()["code"] == "ticket_not_found"


def _at(db, redemption_id: int, when: datetime) -> None:
    with db.transaction() as session:
        session.execute(update(Redemption).where(Redemption.id == redemption_id)
                        .values(redeemed_at=when))


def test_operator_lists_scans_by_time_gate_and_product(client, db):
    pass_ = paid_ticket(client, product_id=101)["code"]
    single = paid_ticket(client, product_id=102)["code"]
    ids = [redeem(client, pass_, entitlement="metro", location="Gate 1").json()["redemption"]["id"],
           redeem(client, single, entitlement="airport", location="Gate 2").json()["redemption"]["id"]]
    redeem(client, single, entitlement="airport", location="Gate 2")  # refused: used up
    refused_id = scans(client, accepted="false")[0]["id"]
    for rid, hour in zip((*ids, refused_id), (8, 9, 10), strict=True):
        _at(db, rid, datetime(2026, 3, 1, hour, tzinfo=UTC))

    every = scans(client)
    assert [s["id"] for s in every] == [refused_id, ids[1], ids[0]]  # newest first
    assert [s["redeemed_at"] for s in every] == [
        "2026-03-01T10:00:00+00:00", "2026-03-01T09:00:00+00:00", "2026-03-01T08:00:00+00:00"]
    window = scans(client, since="2026-03-01T09:00:00Z", until="2026-03-01T10:00:00+00:00")
    assert [s["id"] for s in window] == [ids[1]]
    assert [s["id"] for s in scans(client, since="2026-03-01T17:30:00+08:00")] == [refused_id]
    assert [s["id"] for s in scans(client, location="Gate 1")] == [ids[0]]
    assert [s["id"] for s in scans(client, product_id=102)] == [refused_id, ids[1]]
    assert [s["id"] for s in scans(client, product_id=102, accepted="true")] == [ids[1]]
    assert [s["id"] for s in scans(client, limit=1)] == [refused_id]
    first = every[-1]
    assert first["ticket_code"] == pass_ and first["product_id"] == 101
    assert first["staff"]["name"] == "Gate Staff" and first["accepted"] is True
    assert first["entitlement"] == "metro" and first["uses_left"] == 0


def test_scan_list_input_and_access(client):
    base = "/admin/tenants/default/redemptions"
    assert client.get(base).status_code == 401
    assert client.get(base, headers=STAFF).status_code == 401
    assert client.get("/admin/tenants/nosuch/redemptions", headers=OPERATOR).status_code == 404
    for params in ({"since": "2026-03-01T09:00:00"},  # no offset: ambiguous, refused
                   {"until": "yesterday"}, {"limit": 0}, {"limit": 1001}, {"product_id": 0}):
        r = client.get(base, headers=OPERATOR, params=params)
        assert r.status_code == 422, params
        assert r.json()["code"] == "validation_error"
