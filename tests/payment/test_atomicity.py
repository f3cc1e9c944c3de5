"""A failure in the middle of issuing tickets leaves the order as it was (TC-PAY-009/301).

A notification alone is applied as a batch of one (`batch_max` above 1); a batch that
fails is rolled back and its notifications are handled once more by the one-at-a-time
path. The fault is armed for every try the request makes: once with no batching (the
one-at-a-time path alone), twice with it (the batch of one, then the one-at-a-time path).
"""

import pytest

from tests.conftest import make_settings
from tests.factories import CUSTOMER, OPERATOR, notify, place_order, product, txn_id


@pytest.fixture(params=[1, 32], ids=["alone", "batched"])
def settings(request, db_url, tmp_path):
    return make_settings(db_url, tmp_path, batch_max=request.param)


@pytest.mark.parametrize("point", ["tickets.after_first_ticket", "tickets.after_entitlements",
                                   "payment.before_apply", "payment.before_record"])
def test_fault_mid_issuance_rolls_back_and_retry_succeeds(client, settings, point):
    order = place_order(client, items=[(101, 2), (102, 1)])
    before = (product(client, 101), product(client, 102))
    tries = 1 if settings.batch_max == 1 else 2
    armed = client.post("/admin/faults", headers=OPERATOR,
                        json={"point": point, "times": tries})
    assert armed.status_code == 200
    txn = txn_id()
    failed = notify(client, order=order, txn=txn)
    assert failed.status_code == 500
    assert failed.json()["status"] == "error" and failed.json()["code"] == "internal_error"
    detail = client.get(f"/orders/{order['order_id']}", headers=CUSTOMER).json()
    assert detail["status"] == "PENDING" and detail["payment_status"] == 0
    assert detail["tickets"] == [] and detail["transaction_id"] is None
    assert client.get("/my/tickets", headers=CUSTOMER).json()["tickets"] == []
    assert (product(client, 101), product(client, 102)) == before
    kept = client.get("/admin/tenants/default/notifications", headers=OPERATOR).json()["notifications"]
    assert [(n["outcome"], n["http_status"]) for n in kept] == [("error", 500)]
    retry = notify(client, order=order, txn=txn)
    assert retry.status_code == 200 and retry.json()["status"] == "processed"
    assert "replayed" not in retry.json()
    assert len(retry.json()["tickets_issued"]) == 3
    assert product(client, 101)["stock"] == before[0]["stock"] - 2
    assert len(client.get("/my/tickets", headers=CUSTOMER).json()["tickets"]) == 3


def test_faults_cannot_be_armed_without_the_setting(tmp_path, db_url):
    from fastapi.testclient import TestClient

    from tests.conftest import make_settings
    from ticketing.api.app import create_app

    app = create_app(make_settings(db_url, tmp_path, fault_injection=False))
    with TestClient(app) as c:
        r = c.post("/admin/faults", headers=OPERATOR, json={"point": "payment.before_apply"})
        assert r.status_code == 404


def test_unknown_fault_point_is_422(client):
    r = client.post("/admin/faults", headers=OPERATOR, json={"point": "nope"})
    assert r.status_code == 422
