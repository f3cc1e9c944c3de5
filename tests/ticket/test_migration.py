"""Migration 0002 matches the models and goes down and up again, on both databases."""

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from ticketing.db import make_engine
from ticketing.migrate import alembic_config, upgrade
from ticketing.models import Base

OURS = {"redemptions", "ticket_signing_keys"}


def _tables(url: str) -> set[str]:
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _touches_ours(diff) -> bool:
    """True when an autogenerate difference concerns one of this migration's tables."""
    if isinstance(diff, list):
        return any(_touches_ours(d) for d in diff)
    return any(getattr(part, "name", None) in OURS or getattr(getattr(part, "table", None),
                                                              "name", None) in OURS
               for part in diff[1:])


def test_migrated_schema_matches_the_models(db_url):
    engine = make_engine(db_url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                     Base.metadata)
    finally:
        engine.dispose()
    assert [d for d in diffs if _touches_ours(d)] == []


def test_downgrade_to_0001_and_back(db_url):
    assert OURS <= _tables(db_url)
    command.downgrade(alembic_config(db_url), "0001")
    assert not OURS & _tables(db_url)
    assert "tickets" in _tables(db_url)
    upgrade(db_url)
    assert OURS <= _tables(db_url)
