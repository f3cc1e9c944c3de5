"""Migration 0005: the rows a payment writes keep no foreign key to their order, its
items or its buyer, on both databases; the migration goes down (the keys come back) and
up again; and the checker reports such a reference that points nowhere, or at another
tenant's row."""

from alembic import command

from tests.audit.books import build_books, run_sql, violations
from tests.factories import OPERATOR
from tests.order.test_hot_parents import _foreign_keys
from ticketing.migrate import alembic_config, upgrade
from ticketing.models import SERVICE_KEPT

KEPT = {(source.split(".")[0], source.split(".")[1], referred)
        for source, referred in SERVICE_KEPT.items()}


def test_the_payment_rows_carry_no_foreign_key_to_order_item_or_user(db_url):
    keys = _foreign_keys(db_url)
    assert not KEPT & keys
    # the keys of rows written elsewhere stay
    assert {("orders", "user_id", "users"), ("order_items", "order_id", "orders"),
            ("refunds", "order_id", "orders"), ("redemptions", "ticket_id", "tickets")} <= keys


def test_downgrade_restores_the_keys_and_upgrade_drops_them_again(db_url):
    before = _foreign_keys(db_url)
    command.downgrade(alembic_config(db_url), "0004")
    assert _foreign_keys(db_url) == before | KEPT
    upgrade(db_url)
    assert _foreign_keys(db_url) == before


def test_a_ticket_naming_another_tenants_user_is_reported(client, db, db_url):
    ids = build_books(client, db)
    assert client.post("/admin/tenants", headers=OPERATOR,
                       json={"slug": "acme", "name": "Acme"}).status_code == 200
    assert client.post("/admin/tenants/acme/users", headers=OPERATOR,
                       json={"name": "Other", "role": "customer"}).status_code == 200
    run_sql(db_url, "UPDATE tickets SET user_id = (SELECT max(id) FROM users) "
                    f"WHERE id = (SELECT min(id) FROM tickets WHERE order_id = {ids['paid']})")
    found = [str(v) for v in violations(db) if v.kind == "dangling_reference"]
    assert len(found) == 1 and found[0].startswith("tenant default: tickets "), found
    assert found[0].endswith("names a user that is not its tenant's"), found
