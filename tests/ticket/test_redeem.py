"""Redeeming tickets at the gate, on SQLite and PostgreSQL: uses, nonces, refusals, records."""

from tests.factories import CUSTOMER, OPERATOR, STAFF
from tests.ticket.helpers import new_user, paid_ticket, redeem, scans


def test_a_scan_uses_one_entitlement_and_records_who_where_when(client):
    ticket = paid_ticket(client)
    r = redeem(client, ticket["code"], entitlement="metro", location="Gate 3")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ticket_code"] == ticket["code"] and body["uses_left"] == 0
    assert body["ticket_status"] == "ACTIVE" and body["replayed"] is False
    red = body["redemption"]
    assert red["entitlement"] == "metro" and red["location"] == "Gate 3"
    assert red["staff"]["name"] == "Gate Staff" and red["redeemed_at"].endswith("+00:00")
    shown = client.get(f"/tickets/{ticket['code']}", headers=CUSTOMER).json()
    assert {e["code"]: e["uses_left"] for e in shown["entitlements"]} == {
        "metro": 0, "bus": 1, "ferry": 1}
    assert shown["redemptions"] == [red]


def test_using_every_entitlement_makes_the_ticket_redeemed(client):
    code = paid_ticket(client)["code"]
    statuses = [redeem(client, code, entitlement=e).json()["ticket_status"]
                for e in ("metro", "bus", "ferry")]
    assert statuses == ["ACTIVE", "ACTIVE", "REDEEMED"]
    shown = client.get(f"/tickets/{code}", headers=STAFF).json()
    assert shown["status"] == "REDEEMED"
    assert [r["entitlement"] for r in shown["redemptions"]] == ["metro", "bus", "ferry"]
    again = redeem(client, code, entitlement="bus")
    assert again.status_code == 409 and again.json()["code"] == "entitlement_used_up"


def test_a_multi_use_entitlement_counts_down(client):
    client.post("/admin/tenants/default/products", headers=OPERATOR, json={
        "product_id": 300, "name": "Ten-ride card", "price": 5000, "stock": 10,
        "entitlements": [{"code": "ride", "name": "Ride", "uses": 3}]})
    code = paid_ticket(client, product_id=300)["code"]
    answers = [redeem(client, code, entitlement="ride") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 409]
    assert [a.json()["uses_left"] for a in answers[:3]] == [2, 1, 0]
    assert answers[2].json()["ticket_status"] == "REDEEMED"


def test_used_up_entitlement_is_refused_and_the_refusal_recorded(client):
    ticket = paid_ticket(client)
    assert redeem(client, ticket["code"]).status_code == 200
    r = redeem(client, ticket["code"], location="Gate 9")
    assert r.status_code == 409 and r.json()["code"] == "entitlement_used_up"
    refused, accepted = scans(client)
    assert refused["accepted"] is False and refused["reason"] == "entitlement_used_up"
    assert refused["location"] == "Gate 9" and refused["ticket_code"] == ticket["code"]
    assert refused["order_id"] == ticket["order_id"] and refused["product_id"] == 101
    assert accepted["accepted"] is True and accepted["reason"] is None
    shown = client.get(f"/tickets/{ticket['code']}", headers=CUSTOMER).json()
    assert len(shown["redemptions"]) == 1  # the ticket lists uses, not refusals


def test_a_retried_nonce_replays_the_first_redemption(client):
    code = paid_ticket(client)["code"]
    first = redeem(client, code, nonce="scan-0001")
    again = redeem(client, code, nonce="scan-0001")
    assert first.status_code == again.status_code == 200
    assert again.json()["replayed"] is True and first.json()["replayed"] is False
    assert again.json()["redemption"] == first.json()["redemption"]
    assert again.json()["uses_left"] == 0
    assert len(scans(client)) == 1
    fresh = redeem(client, code, nonce="scan-0002")
    assert fresh.status_code == 409 and fresh.json()["code"] == "entitlement_used_up"


def test_the_same_nonce_for_another_scan_is_a_conflict(client):
    code = paid_ticket(client)["code"]
    assert redeem(client, code, entitlement="metro", nonce="n-1").status_code == 200
    r = redeem(client, code, entitlement="bus", nonce="n-1")
    assert r.status_code == 409 and r.json()["code"] == "nonce_reused"
    bus = client.get(f"/tickets/{code}", headers=STAFF).json()["entitlements"][1]
    assert bus == {"code": "bus", "name": "Bus ride", "uses_total": 1, "uses_left": 1}
    # a nonce belongs to one ticket: another ticket may use the same one
    other = paid_ticket(client)["code"]
    assert redeem(client, other, entitlement="metro", nonce="n-1").json()["replayed"] is False


def test_a_refunded_ticket_is_void_at_the_gate(client):
    ticket = paid_ticket(client)
    refund = client.post(f"/admin/tenants/default/orders/{ticket['order_id']}/refund",
                         headers=OPERATOR)
    assert refund.status_code == 200, refund.text
    r = redeem(client, ticket["code"], nonce="after-refund")
    assert r.status_code == 409 and r.json()["code"] == "ticket_void"
    [refused] = scans(client)
    assert refused["reason"] == "ticket_void" and refused["nonce"] == "after-refund"
    assert client.get(f"/tickets/{ticket['code']}", headers=STAFF).json()["status"] == "VOID"


def test_unknown_entitlement_is_404_and_recorded(client):
    code = paid_ticket(client, product_id=102)["code"]
    r = redeem(client, code, entitlement="metro")
    assert r.status_code == 404 and r.json()["code"] == "entitlement_not_found"
    assert scans(client)[0]["reason"] == "entitlement_not_found"


def test_unknown_ticket_and_another_tenants_ticket_are_not_found(client):
    code = paid_ticket(client)["code"]
    client.post("/admin/tenants", headers=OPERATOR, json={"slug": "acme", "name": "Acme"})
    acme_staff = new_user(client, name="Acme gate", role="staff", tenant="acme")
    r = redeem(client, code, headers=acme_staff["headers"])
    assert r.status_code == 404 and r.json()["code"] == "ticket_not_found"
    [acme_scan] = scans(client, "acme")
    assert acme_scan["reason"] == "ticket_not_found" and acme_scan["order_id"] is None
    assert acme_scan["staff"]["user_id"] == acme_staff["user_id"]
    assert scans(client) == []  # nothing leaks into the ticket's own tenant
    r = redeem(client, "TKT-ZZZZZZZZZZZZZZZZ")
    assert r.status_code == 404 and r.json()["code"] == "ticket_not_found"
    r = redeem(client, "not-a-code")
    assert r.status_code == 404 and r.json()["code"] == "ticket_not_found"
    assert [s["ticket_code"] for s in scans(client)] == ["not-a-code", "TKT-ZZZZZZZZZZZZZZZZ"]
    assert client.get(f"/tickets/{code}", headers=STAFF).json()["entitlements"][0]["uses_left"] == 1


def test_only_staff_may_redeem(client):
    code = paid_ticket(client)["code"]
    r = redeem(client, code, headers=CUSTOMER)
    assert r.status_code == 403 and r.json()["code"] == "wrong_role"
    assert redeem(client, code, headers={}).status_code == 401
    r = redeem(client, code, headers={"Authorization": "Bearer nobody-has-this"})
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    r = redeem(client, code, headers=OPERATOR)  # the operator token is not a gate token
    assert r.status_code == 401
    assert scans(client) == []
    shown = client.get(f"/tickets/{code}", headers=CUSTOMER).json()
    assert shown["redemptions"] == [] and shown["entitlements"][0]["uses_left"] == 1


def test_bad_scan_bodies_are_422(client):
    code = paid_ticket(client)["code"]
    for body in ({"location": "Gate 3"}, {"entitlement": "metro"},
                 {"entitlement": "METRO!", "location": "Gate 3"},
                 {"entitlement": "metro", "location": ""},
                 {"entitlement": "metro", "location": "x" * 101},
                 {"entitlement": "metro", "location": "Gate 3", "nonce": ""},
                 {"entitlement": "metro", "location": "Gate 3", "nonce": "has space"},
                 {"entitlement": "metro", "location": "Gate 3", "nonce": "n" * 65}):
        r = client.post(f"/tickets/{code}/redeem", headers=STAFF, json=body)
        assert r.status_code == 422, body
        assert r.json()["code"] == "validation_error"
    assert scans(client) == []


def test_each_staff_member_is_recorded_by_id(client):
    code = paid_ticket(client)["code"]
    alice = new_user(client, name="Alice at Gate 1", role="staff")
    bob = new_user(client, name="Bob at Gate 2", role="staff")
    redeem(client, code, entitlement="metro", location="Gate 1", headers=alice["headers"])
    redeem(client, code, entitlement="bus", location="Gate 2", headers=bob["headers"])
    shown = client.get(f"/tickets/{code}", headers=CUSTOMER).json()["redemptions"]
    assert [(r["staff"]["user_id"], r["staff"]["name"], r["location"]) for r in shown] == [
        (alice["user_id"], "Alice at Gate 1", "Gate 1"), (bob["user_id"], "Bob at Gate 2", "Gate 2")]
