"""The operator API: tenants, products, users, gateway secrets; both databases."""

from tests.factories import OPERATOR, notify, place_order, product, txn_id


def test_operator_token_is_required(client):
    assert client.post("/admin/tenants", json={"slug": "x", "name": "X"}).status_code == 401
    bad = {"Authorization": "Bearer user123"}
    r = client.post("/admin/tenants", headers=bad, json={"slug": "x", "name": "X"})
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    r = client.get("/admin/tenants/default/products/101", headers={"Authorization": "Basic abc"})
    assert r.status_code == 401


def test_tenant_lifecycle(client):
    r = client.post("/admin/tenants", headers=OPERATOR, json={"slug": "acme", "name": "Acme Rail"})
    assert r.status_code == 200 and r.json()["slug"] == "acme"
    dup = client.post("/admin/tenants", headers=OPERATOR, json={"slug": "acme", "name": "Again"})
    assert dup.status_code == 409 and dup.json()["code"] == "tenant_exists"
    bad = client.post("/admin/tenants", headers=OPERATOR, json={"slug": "Not A Slug", "name": "x"})
    assert bad.status_code == 422


def test_two_tenants_may_both_sell_product_101(client):
    client.post("/admin/tenants", headers=OPERATOR, json={"slug": "acme", "name": "Acme"})
    r = client.post("/admin/tenants/acme/products", headers=OPERATOR, json={
        "product_id": 101, "name": "Acme Day Pass", "price": 1500, "stock": 5,
        "entitlements": [{"code": "tram", "name": "Tram", "uses": 10}]})
    assert r.status_code == 200
    assert r.json()["entitlements"] == [{"code": "tram", "name": "Tram", "uses": 10}]
    dup = client.post("/admin/tenants/acme/products", headers=OPERATOR, json={
        "product_id": 101, "name": "Again", "price": 1, "stock": 1})
    assert dup.status_code == 409 and dup.json()["code"] == "product_exists"
    assert product(client, 101, "acme")["price"] == 1500
    assert product(client, 101)["price"] == 9900
    assert client.get("/admin/tenants/nosuch/products/101", headers=OPERATOR).status_code == 404


def test_product_validation(client):
    base = {"product_id": 700, "name": "P", "price": 100, "stock": 1}
    for change in ({"price": -1}, {"stock": -1}, {"product_id": 0}, {"price": "100"},
                   {"entitlements": [{"code": "a", "name": "A", "uses": 1}] * 2},
                   {"entitlements": [{"code": "A B", "name": "A", "uses": 1}]}, {"name": ""}):
        r = client.post("/admin/tenants/default/products", headers=OPERATOR, json={**base, **change})
        assert r.status_code == 422, change
        assert r.json()["code"] == "validation_error"
    assert client.get("/admin/tenants/default/products/700", headers=OPERATOR).status_code == 404


def test_users_tokens_are_per_tenant_and_shown_once(client):
    client.post("/admin/tenants", headers=OPERATOR, json={"slug": "acme", "name": "Acme"})
    r = client.post("/admin/tenants/acme/users", headers=OPERATOR,
                    json={"name": "Ann", "role": "customer"})
    assert r.status_code == 200
    token = r.json()["token"]
    assert len(token) >= 20
    client.post("/admin/tenants/acme/products", headers=OPERATOR, json={
        "product_id": 1, "name": "Acme Pass", "price": 100, "stock": 3})
    ann = {"Authorization": f"Bearer {token}", "X-Tenant-ID": "acme"}
    assert client.post("/orders", headers=ann, json={"items": [{"product_id": 1, "quantity": 1}]}).status_code == 200
    # Ann's token means nothing in the default tenant.
    r = client.get("/my/tickets", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    dup = client.post("/admin/tenants/acme/users", headers=OPERATOR,
                      json={"name": "Bob", "role": "staff", "token": token})
    assert dup.status_code == 409


def test_mock_secret_is_never_returned(client):
    r = client.put("/admin/tenants/default/gateways/mock", headers=OPERATOR,
                   json={"secret": "very-secret-value"})
    assert r.status_code == 200 and "very-secret-value" not in r.text
    order = place_order(client)
    notify(client, order=order, txn=txn_id())  # refused: unsigned
    listing = client.get("/admin/tenants/default/notifications", headers=OPERATOR)
    assert "very-secret-value" not in listing.text
    cleared = client.put("/admin/tenants/default/gateways/mock", headers=OPERATOR, json={"secret": None})
    assert cleared.json()["signed"] is False
    assert notify(client, order=order, txn=txn_id()).status_code == 200
