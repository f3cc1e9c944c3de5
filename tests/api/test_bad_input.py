"""Bad input gets the contract's status with `{"error", "code"}` and changes nothing."""

import pytest

from tests.factories import CUSTOMER, OPERATOR, product


def _no_orders(client):
    assert product(client, 101)["reserved"] == 0
    assert client.get("/my/tickets", headers=CUSTOMER).json()["tickets"] == []


@pytest.mark.parametrize("body", [
    b"{", b"[]", b"null", b'"x"', b'{"items": []}', b'{"items": {}}', b'{"items": [{}]}',
    b'{"items": [{"product_id": 101}]}', b'{"items": [{"product_id": 101, "quantity": 0}]}',
    b'{"items": [{"product_id": 101, "quantity": -1}]}',
    b'{"items": [{"product_id": 101, "quantity": 1000000000000}]}',
    b'{"items": [{"product_id": 101, "quantity": 1.5}]}',
    b'{"items": [{"product_id": 101, "quantity": "1"}]}',
    b'{"items": [{"product_id": "abc", "quantity": 1}]}',
    b'{"items": [{"product_id": 101, "quantity": true}]}',
    b'{"items": [{"product_id": 99999999999999999999999, "quantity": 1}]}',
])
def test_bad_order_bodies_are_422(client, body):
    r = client.post("/orders", content=body, headers={**CUSTOMER, "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert set(r.json()) >= {"error", "code"} and r.json()["code"] in ("validation_error", "invalid_json")
    _no_orders(client)


def test_missing_or_wrong_token_is_401(client):
    body = {"items": [{"product_id": 101, "quantity": 1}]}
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Token user123"},
                    {"Authorization": "Bearer "}):
        r = client.post("/orders", json=body, headers=headers)
        assert r.status_code == 401, headers
        assert r.json()["code"] == "unauthorized"
    _no_orders(client)


def test_unknown_tenant_is_404(client):
    for tenant in ("nosuch", "BAD SLUG", "x" * 100):
        r = client.get("/my/tickets", headers={**CUSTOMER, "X-Tenant-ID": tenant})
        assert r.status_code == 404 and r.json()["code"] == "tenant_not_found"


def test_the_notification_endpoint_reads_its_tenant_and_is_documented_as_it_does(client):
    """POST /payments/notify takes the bare request (api/lean.py): it names its tenant
    itself, with the same answers as every other route, and its OpenAPI operation
    still says so."""
    body = {"order_id": 1, "gateway_txn_id": "LEAN-1", "status": "SUCCESS", "amount": 1}
    for tenant in ("nosuch", "BAD SLUG", "x" * 100):
        r = client.post("/payments/notify", json=body, headers={"X-Tenant-ID": tenant})
        assert r.status_code == 404 and r.json()["code"] == "tenant_not_found", tenant
    r = client.post("/payments/notify", content=b"{", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and set(r.json()) >= {"error", "code"}
    assert r.headers["x-request-id"]  # through the same middleware
    operation = client.get("/openapi.json").json()["paths"]["/payments/notify"]["post"]
    # the header as FastAPI documents it where it comes from a dependency (GET /my/tickets)
    tickets = client.get("/openapi.json").json()["paths"]["/my/tickets"]["get"]
    assert operation["parameters"] == [p for p in tickets["parameters"] if p["name"] == "x-tenant-id"]
    body_schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert {"order_id", "gateway_txn_id", "status", "amount"} <= set(body_schema["properties"])
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/NotifyOut"}


def test_body_over_the_limit_is_413(client):
    big = b'{"items": [' + b'{"product_id": 101, "quantity": 1},' * 3000 + b"]}"
    assert len(big) > 65536
    r = client.post("/orders", content=big, headers={**CUSTOMER, "Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"
    r = client.post("/payments/notify", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    _no_orders(client)


def test_unknown_routes_and_methods(client):
    r = client.get("/nope")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = client.delete("/orders")
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"
    r = client.get("/orders/abc", headers=CUSTOMER)
    assert r.status_code == 422 and r.json()["code"] == "validation_error"
    r = client.get("/tickets/TKT-NOPE", headers=CUSTOMER)
    assert r.status_code == 404 and r.json()["code"] == "ticket_not_found"


def test_operations_endpoints(client):
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/readyz").status_code == 200
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "ticketing_request_seconds" in metrics.text
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert {"/orders", "/payments/notify", "/my/tickets", "/tickets/{ticket_code}"} <= set(schema["paths"])


def test_readyz_reports_an_unreachable_database(tmp_path):
    from fastapi.testclient import TestClient

    from tests.conftest import make_settings
    from ticketing.api.app import create_app

    settings = make_settings("postgresql://nobody@127.0.0.1:1/none", tmp_path)
    with TestClient(create_app(settings)) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["code"] == "database_unavailable"
        assert c.get("/healthz").status_code == 200


def test_admin_listing_needs_operator(client):
    r = client.get("/admin/tenants/default/notifications", headers=CUSTOMER)
    assert r.status_code == 401
    assert client.get("/admin/tenants/default/notifications", headers=OPERATOR).status_code == 200


@pytest.mark.parametrize("path,body", [
    ("/admin/tenants", {"slug": "nul-tenant", "name": "Bad\u0000Name"}),
    ("/admin/tenants/default/users", {"name": "Eve\u0000", "role": "customer"}),
    ("/admin/tenants/default/products", {"product_id": 901, "name": "x\u0000y", "price": 1,
                                         "stock": 1}),
])
def test_a_nul_in_free_text_is_422_not_a_database_error(client, path, body):
    r = client.post(path, headers=OPERATOR, json=body)
    assert r.status_code == 422 and r.json()["code"] == "validation_error", r.text


def test_a_nul_in_a_gate_name_is_422(client):
    from tests.factories import STAFF, notify, place_order, txn_id

    order = place_order(client)
    code = notify(client, order=order, txn=txn_id()).json()["tickets_issued"][0]["ticket_code"]
    r = client.post(f"/tickets/{code}/redeem", headers=STAFF,
                    json={"entitlement": "metro", "location": "Gate\u00003"})
    assert r.status_code == 422 and r.json()["code"] == "validation_error", r.text


def test_a_nul_in_a_gate_filter_is_422(client):
    r = client.get("/admin/tenants/default/redemptions", headers=OPERATOR,
                   params={"location": "Gate\u00003"})
    assert r.status_code == 422 and r.json()["code"] == "validation_error", r.text
