"""The invariant checker passes on honest books and names every corruption raw SQL can make."""

import os
import subprocess
import sys

import pytest

from tests.audit.books import build_books, run_sql, violations
from tests.factories import OPERATOR
from ticketing.audit.checker import check_database

TXN_COLUMNS = ("tenant_id, gateway, gateway_txn_id, order_id, amount, status, outcome, applied, "
               "refunded, response, created_at")
TICKET_COLUMNS = ("tenant_id, order_id, order_item_id, unit_index, user_id, ticket_code, "
                  "product_id, product_name, status, issued_at")


def _forged_ticket(order: str, unit: str) -> str:
    return (f"INSERT INTO tickets ({TICKET_COLUMNS}) SELECT i.tenant_id, i.order_id, i.id, {unit}, "
            "o.user_id, 'TKT-FORGED' || i.id, i.product_id, i.product_name, 'ACTIVE', o.created_at "
            "FROM order_items i JOIN orders o ON o.id = i.order_id "
            f"WHERE i.id = (SELECT min(id) FROM order_items WHERE order_id = {{{order}}})")


def _copied_txn(order: str, txn_id: str, applied: str) -> str:
    return (f"INSERT INTO payment_transactions (id, {TXN_COLUMNS}) SELECT "
            "(SELECT max(id) + 1 FROM payment_transactions), tenant_id, gateway, "
            f"{txn_id}, order_id, amount, status, 'processed', {applied}, false, response, "
            f"created_at FROM payment_transactions WHERE order_id = {{{order}}} AND applied")


# Constraints in the way of a corruption, dropped per dialect (run_sql ignores CHECKs on SQLite).
UNGUARD = {
    "{loosen}": {  # UNIQUE (tenant, gateway, txn id): SQLite must rebuild the table
        "sqlite": ["CREATE TABLE pt_loose AS SELECT * FROM payment_transactions",
                   "DROP TABLE payment_transactions",
                   "ALTER TABLE pt_loose RENAME TO payment_transactions"],
        "postgresql": ["ALTER TABLE payment_transactions DROP CONSTRAINT "
                       "payment_transactions_tenant_id_gateway_gateway_txn_id_key"]},
    "{unchecked}": {
        "sqlite": [],
        "postgresql": ["ALTER TABLE products DROP CONSTRAINT ck_products_reserved, "
                       "DROP CONSTRAINT ck_products_stock"]},
}
PAID_TICKET = "(SELECT min(id) FROM tickets WHERE order_id = {paid})"


def _uses(*entitlements: tuple[str, int, int], total: str) -> str:
    """Rewrite the paid order's first ticket (a 3-in-1 pass): its list, and its uses left."""
    listed = ", ".join(f'{{{{"code": "{code}", "name": "{code}", "uses_total": {n}, '
                       f'"uses_left": {left}}}}}' for code, n, left in entitlements)
    return (f"UPDATE tickets SET entitlements = '[{listed}]', uses_left = {total} "
            f"WHERE id = {PAID_TICKET}")


def _scans_of_paid_ticket(*codes: str) -> str:
    """Accepted scans of the paid order's first ticket, one per code, nothing else changed."""
    picked = " UNION ALL ".join(f"SELECT '{code}' AS code" for code in codes)
    return ("INSERT INTO redemptions (tenant_id, ticket_id, ticket_code, entitlement, location, "
            "staff_user_id, accepted, uses_left, redeemed_at) SELECT t.tenant_id, t.id, "
            "t.ticket_code, e.code, 'Gate 1', (SELECT min(id) FROM users WHERE role = 'staff'), "
            f"true, 0, t.issued_at FROM tickets t, ({picked}) e WHERE t.id = {PAID_TICKET}")

# name: (statements, kind the checker must report, subject it must name)
CORRUPTIONS = {
    "reserved drifts": (["UPDATE products SET reserved = reserved - 1 WHERE product_id = 102"],
                        "reserved_mismatch", "product 102"),
    "sale without an order": (["UPDATE products SET sold = sold + 1, stock = stock - 1 "
                               "WHERE product_id = 101"], "sold_mismatch", "product 101"),
    "stock appears": (["UPDATE products SET stock = stock + 5 WHERE product_id = 101"],
                      "stock_mismatch", "product 101"),
    "reserved over stock": (["{unchecked}", "UPDATE products SET reserved = stock + 1, stock_loaded = "
                             "stock_loaded WHERE product_id = 102"], "stock_negative", "product 102"),
    "negative reservation": (["{unchecked}", "UPDATE products SET reserved = -1 WHERE product_id = 101"],
                             "stock_negative", "product 101"),
    "paid ticket voided": ([f"UPDATE tickets SET status = 'VOID' WHERE id = {PAID_TICKET}"],
                           "ticket_count", "order {paid}"),
    "ticket issued twice": ([_forged_ticket("paid", "i.quantity")], "ticket_count", "order {paid}"),
    "ticket outside the units": ([f"UPDATE tickets SET unit_index = 7 WHERE id = {PAID_TICKET}"],
                                 "ticket_misplaced", "order {paid}"),
    "ticket moved to another order": (
        [f"UPDATE tickets SET order_id = {{pending}} WHERE id = {PAID_TICKET}"],
        "ticket_misplaced", "order {paid}"),
    "ticket of a missing order": (
        [f"UPDATE tickets SET order_id = 999999 WHERE id = {PAID_TICKET}"],
        "unpaid_tickets_live", "order 999999"),
    "ticket names no order": (
        [f"UPDATE tickets SET order_id = 999999 WHERE id = {PAID_TICKET}"],
        "dangling_reference", "tickets "),
    "ticket names another order's item": (
        ["UPDATE tickets SET order_item_id = (SELECT min(id) FROM order_items "
         f"WHERE order_id = {{pending}}) WHERE id = {PAID_TICKET}"],
        "dangling_reference", "tickets "),
    "ticket names no user": ([f"UPDATE tickets SET user_id = 999999 WHERE id = {PAID_TICKET}"],
                             "dangling_reference", "tickets "),
    "order event names no order": (["UPDATE order_events SET order_id = 999999 "
                                    "WHERE id = (SELECT min(id) FROM order_events)"],
                                   "dangling_reference", "order_events "),
    "payment names no order": (["UPDATE payment_transactions SET order_id = 999999 "
                                "WHERE order_id = {paid}"],
                               "dangling_reference", "payment_transactions "),
    "ticket for a pending order": ([_forged_ticket("pending", "0")],
                                   "unpaid_tickets_live", "order {pending}"),
    "ticket for a closed order": ([_forged_ticket("closed", "0")],
                                  "unpaid_tickets_live", "order {closed}"),
    "use taken without a scan": (
        [_uses(("metro", 1, 0), ("bus", 1, 1), ("ferry", 1, 1), total="2")],
        "ticket_uses_mismatch", "order {paid}"),
    "more uses left than bought": (
        [_uses(("metro", 1, 2), ("bus", 1, 1), ("ferry", 1, 1), total="4")],
        "ticket_uses_mismatch", "order {paid}"),
    "entitlement listed twice": (
        [_uses(("metro", 1, 1), ("bus", 1, 1), ("ferry", 1, 1), ("metro", 1, 1), total="4")],
        "ticket_uses_mismatch", "order {paid}"),
    "ticket's uses left drift": (
        [f"UPDATE tickets SET uses_left = uses_left + 1 WHERE id = {PAID_TICKET}"],
        "ticket_uses_mismatch", "order {paid}"),
    "scan that took no use": ([_scans_of_paid_ticket("bus")], "ticket_uses_mismatch",
                              "order {paid}"),
    "redeemed with uses left": (
        [f"UPDATE tickets SET status = 'REDEEMED' WHERE id = {PAID_TICKET}"],
        "ticket_status_mismatch", "order {paid}"),
    "every use gone, still active": (
        [_uses(("metro", 1, 0), ("bus", 1, 0), ("ferry", 1, 0), total="0"),
         _scans_of_paid_ticket("metro", "bus", "ferry")],
        "ticket_status_mismatch", "order {paid}"),
    "refunded ticket revived": (["UPDATE tickets SET status = 'ACTIVE' WHERE order_id = {refunded}"],
                                "refunded_tickets_live", "order {refunded}"),
    "paid without payment": (["UPDATE payment_transactions SET applied = false "
                              "WHERE order_id = {paid}"], "payment_count", "order {paid}"),
    "paid twice": (["DROP INDEX uq_payment_one_success_per_order",
                    _copied_txn("paid", "'FORGED-2'", "true")], "payment_count", "order {paid}"),
    "payment of another amount": (["UPDATE payment_transactions SET amount = amount + 1 "
                                   "WHERE order_id = {paid}"], "payment_amount", "order {paid}"),
    "order names another payment": (["UPDATE orders SET transaction_id = 'OTHER' WHERE id = {paid}"],
                                    "payment_txn_mismatch", "order {paid}"),
    "failed payment applied": (["UPDATE payment_transactions SET status = 'FAILED' "
                                "WHERE order_id = {paid} AND applied"],
                               "payment_applied_not_success", "order {paid}"),
    "payment applied to a pending order": (
        [f"INSERT INTO payment_transactions ({TXN_COLUMNS}) SELECT tenant_id, 'mock', 'FORGED-1', "
         "id, total_amount, 'SUCCESS', 'processed', true, false, '{{}}', created_at FROM orders "
         "WHERE id = {pending}"], "payment_applied_unpaid", "order {pending}"),
    "gateway txn recorded twice": (["{loosen}", _copied_txn("paid", "gateway_txn_id", "false")],
                                   "txn_duplicate", "payment mock/"),
    "refund never made": (["UPDATE payment_transactions SET refunded = true WHERE order_id = {paid}"],
                          "refund_record_mismatch", "order {paid}"),
    "refunded twice": (["INSERT INTO refunds (tenant_id, order_id, payment_transaction_id, gateway, "
                        "out_refund_no, amount, status, created_at, updated_at) SELECT tenant_id, "
                        "order_id, payment_transaction_id, gateway, out_refund_no || '-2', amount, "
                        "status, created_at, updated_at FROM refunds WHERE order_id = {refunded}"],
                       "refunded_twice", "order {refunded}"),
    "refund lost": (["UPDATE refunds SET status = 'FAILED' WHERE order_id = {refunded}"],
                    "refund_record_mismatch", "order {refunded}"),
    "refunded order, payment kept": (["UPDATE payment_transactions SET refunded = false "
                                      "WHERE order_id = {refunded}", "DELETE FROM refunds"],
                                     "refund_state_mismatch", "order {refunded}"),
    "status disagrees": (["UPDATE orders SET status = 'PAID' WHERE id = {pending}"],
                         "status_mismatch", "order {pending}"),
    "unknown payment status": (["UPDATE orders SET payment_status = 9 WHERE id = {failed}"],
                               "status_mismatch", "order {failed}"),
    "total drifts": (["UPDATE orders SET total_amount = total_amount + 1 WHERE id = {pending}"],
                     "total_mismatch", "order {pending}"),
    "flag without money": (["UPDATE orders SET needs_refund = true WHERE id = {paid}"],
                           "refund_flag_without_money", "order {paid}"),
    "money unflagged": (["UPDATE orders SET needs_refund = false WHERE id = {double}"],
                        "unrefunded_money_unflagged", "order {double}"),
    "item of a missing product": (["UPDATE order_items SET product_pk = 999999 "
                                   "WHERE order_id = {pending}"],
                                  "dangling_reference", "order {pending}"),
    "unknown notification outcome": (["UPDATE notifications SET outcome = 'lost' "
                                      "WHERE id = (SELECT min(id) FROM notifications)"],
                                     "notification_outcome", "notification "),
}


def test_honest_books_pass(client, db):
    build_books(client, db)
    assert violations(db) == []


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_checker_names_each_corruption(client, db, db_url, name):
    ids = build_books(client, db)
    statements, kind, subject = CORRUPTIONS[name]
    dialect = "sqlite" if db_url.startswith("sqlite") else "postgresql"
    expanded: list[str] = []
    for sql in statements:
        if sql in UNGUARD:
            expanded += UNGUARD[sql][dialect]
        else:
            expanded.append(sql.format(**ids))
    run_sql(db_url, *expanded)
    found = violations(db)
    assert any(v.kind == kind and v.subject.startswith(subject.format(**ids))
               and v.tenant == "default" for v in found), [str(v) for v in found]


def test_report_lists_the_first_violations_of_each_check(client, db, db_url):
    ids = build_books(client, db)
    run_sql(db_url, "UPDATE orders SET total_amount = total_amount + 1 WHERE status <> 'PAID' "
            "AND status <> 'REFUNDED'")  # three unpaid orders; paid ones would break more rules
    every = [v for v in violations(db) if v.kind == "total_mismatch"]
    unpaid = ("closed", "pending", "failed")
    assert [v.subject for v in every] == [f"order {ids[name]}" for name in unpaid]
    found = check_database(db, limit=2)
    listed = [v for v in found if v.kind == "total_mismatch"]
    assert listed == every[:2]
    assert [str(v) for v in found if v.kind == "report_truncated"] == [
        "tenant default: check orders: report_truncated: "
        "more than 2 violating rows; the first 2 are listed"]


def test_every_tenant_is_checked_and_reported_in_turn(client, db, db_url):
    build_books(client, db)
    assert client.post("/admin/tenants", headers=OPERATOR,
                       json={"slug": "acme", "name": "Acme"}).status_code == 200
    assert client.post("/admin/tenants/acme/products", headers=OPERATOR, json={
        "product_id": 101, "name": "Acme Pass", "price": 100, "stock": 5,
        "entitlements": [{"code": "ride", "name": "Ride", "uses": 1}]}).status_code == 200
    run_sql(db_url, "UPDATE products SET stock = stock + 1")
    found = [(v.tenant, v.subject) for v in violations(db) if v.kind == "stock_mismatch"]
    assert found == [("default", "product 101"), ("default", "product 102"), ("acme", "product 101")]


def _cli_check(url):
    env = {**os.environ, "TICKETING_DATABASE_URL": url}
    return subprocess.run([sys.executable, "-m", "ticketing.cli.main", "check"], env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_check_exit_status_names_violations(client, db, db_url):
    ids = build_books(client, db)
    clean = _cli_check(db_url)
    assert clean.returncode == 0 and "ok" in clean.stdout, clean.stderr
    run_sql(db_url, "UPDATE products SET stock = stock + 5 WHERE product_id = 101",
            f"UPDATE tickets SET status = 'VOID' WHERE order_id = {ids['paid']}")
    broken = _cli_check(db_url)
    assert broken.returncode == 1
    lines = broken.stdout.splitlines()
    assert "tenant default: product 101: stock_mismatch: stock 1003 + sold 2 != stock_loaded 1000" \
        in lines, broken.stdout
    assert any(line.startswith(f"tenant default: order {ids['paid']}: ticket_count:")
               for line in lines)
    assert "invariant violation" in broken.stderr


def test_a_row_of_a_tenant_that_does_not_exist_is_reported(client, db, db_url):
    build_books(client, db)
    run_sql(db_url, "UPDATE notifications SET tenant_id = 424242 "
                    "WHERE id = (SELECT min(id) FROM notifications)")
    found = [v for v in violations(db) if v.kind == "dangling_reference"]
    assert [(v.tenant, v.subject.split()[0]) for v in found] == [("#424242", "notifications")]
