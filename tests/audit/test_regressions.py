"""Bugs the invariant checker and the model found, pinned down on both databases."""

from tests.audit.books import refund, violations
from tests.factories import notify, place_order, txn_id


def _order_state(client, order_id):
    from tests.factories import OPERATOR

    detail = client.get(f"/admin/tenants/default/orders/{order_id}", headers=OPERATOR).json()
    return detail["status"], detail["needs_refund"]


def test_refunding_one_extra_payment_keeps_the_flag_while_another_is_owed(client, db):
    order = place_order(client, items=[(102, 1)])
    for _ in range(3):  # paid once, then two more payments that cannot be honoured
        assert notify(client, order=order, txn=txn_id()).status_code == 200
    assert _order_state(client, order["order_id"]) == ("PAID", True)
    assert refund(client, order["order_id"]).status_code == 200  # the applied payment
    assert _order_state(client, order["order_id"]) == ("REFUNDED", True)
    assert refund(client, order["order_id"]).status_code == 200  # first extra
    assert _order_state(client, order["order_id"]) == ("REFUNDED", True)
    assert violations(db) == []
    assert refund(client, order["order_id"]).status_code == 200  # second extra
    assert _order_state(client, order["order_id"]) == ("REFUNDED", False)
    assert refund(client, order["order_id"]).status_code == 409
    assert violations(db) == []
