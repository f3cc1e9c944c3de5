"""Migration 0003: rows written per request keep no foreign key to tenants or products.

The models and the migrated schema agree on every foreign key, on both databases, and
the migration goes down (the keys come back) and up again.
"""

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from ticketing.db import make_engine
from ticketing.migrate import alembic_config, upgrade
from ticketing.models import Base


def _foreign_keys(url: str) -> set[tuple[str, str, str]]:
    """(table, column, referred table) of every foreign key in the database."""
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        found = set()
        inspector = inspect(engine)
        for table in inspector.get_table_names():
            for fk in inspector.get_foreign_keys(table):
                found.add((table, fk["constrained_columns"][0], fk["referred_table"]))
        return found
    finally:
        engine.dispose()


def test_models_and_schema_agree_on_every_foreign_key(db_url):
    engine = make_engine(db_url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert [d for d in diffs if d[0] in ("add_fk", "remove_fk")] == []


def test_no_request_table_references_tenants_or_products(db_url):
    keys = _foreign_keys(db_url)
    assert ("orders", "user_id", "users") in keys and ("order_items", "order_id", "orders") in keys
    assert {t for t, _, ref in keys if ref == "tenants"} == {
        "users", "products", "product_entitlements", "gateway_configs", "ticket_signing_keys"}
    assert {(t, c) for t, c, ref in keys if ref == "products"} == {
        ("product_entitlements", "product_pk")}


def test_downgrade_restores_the_keys_and_upgrade_drops_them_again(db_url):
    before = _foreign_keys(db_url)
    command.downgrade(alembic_config(db_url), "0002")
    restored = _foreign_keys(db_url)
    assert ("tickets", "tenant_id", "tenants") in restored
    assert ("order_items", "product_pk", "products") in restored
    upgrade(db_url)
    assert _foreign_keys(db_url) == before
