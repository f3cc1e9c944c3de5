"""Alembic environment: migrates the database named by the caller's URL."""

from __future__ import annotations

from alembic import context

from ticketing.db import make_engine
from ticketing.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    engine = make_engine(url, pool_size=1, max_overflow=0)
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # SQLite changes a table's schema by copying the table, dropping it and
            # renaming the copy (Alembic's batch mode). Dropping a table that other
            # rows name fails while foreign keys are enforced, so, as SQLite's own
            # recipe has it, they are off during the migration (the pragma is ignored
            # inside a transaction: set before BEGIN) and checked before COMMIT.
            connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=sqlite,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"the migration left rows naming no row: {broken[:5]}")
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `ticketing db upgrade`")
run_migrations_online()
