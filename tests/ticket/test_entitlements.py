"""Entitlements are copied onto each ticket when it is issued; both databases."""

from sqlalchemy import delete, select, update

from tests.factories import CUSTOMER
from tests.ticket.helpers import paid_ticket, redeem
from ticketing.models import Product, ProductEntitlement


def _entitlements(client, code):
    shown = client.get(f"/tickets/{code}", headers=CUSTOMER).json()
    return [(e["code"], e["name"], e["uses_total"], e["uses_left"]) for e in shown["entitlements"]]


def test_changing_a_products_entitlements_leaves_sold_tickets_alone(client, db):
    sold = paid_ticket(client, product_id=101)["code"]
    with db.transaction() as session:
        pk, tenant_id = session.execute(
            select(Product.id, Product.tenant_id).where(Product.product_id == 101)).one()
        session.execute(update(ProductEntitlement)
                        .where(ProductEntitlement.product_pk == pk, ProductEntitlement.code == "metro")
                        .values(name="Metro day", uses=5))
        session.execute(delete(ProductEntitlement)
                        .where(ProductEntitlement.product_pk == pk, ProductEntitlement.code == "ferry"))
        session.add(ProductEntitlement(tenant_id=tenant_id, product_pk=pk, code="tram", name="Tram", uses=2))

    assert _entitlements(client, sold) == [
        ("metro", "Metro ride", 1, 1), ("bus", "Bus ride", 1, 1), ("ferry", "Ferry crossing", 1, 1)]
    assert redeem(client, sold, entitlement="ferry").status_code == 200
    assert redeem(client, sold, entitlement="tram").json()["code"] == "entitlement_not_found"
    assert redeem(client, sold, entitlement="metro").json()["uses_left"] == 0

    later = paid_ticket(client, product_id=101)["code"]
    assert _entitlements(client, later) == [
        ("metro", "Metro day", 5, 5), ("bus", "Bus ride", 1, 1), ("tram", "Tram", 2, 2)]
