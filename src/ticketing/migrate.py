"""Schema migrations through Alembic, with the scripts shipped inside the package."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    """An Alembic config pointing at the packaged scripts and `database_url`."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    cfg.attributes["database_url"] = database_url
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema at `database_url` up to `revision`."""
    command.upgrade(alembic_config(database_url), revision)


# SQLite keeps foreign keys unnamed; batch mode names them by this convention to drop them.
_SQLITE_NAMES = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def _sqlite_batches(keys: list[tuple[str, str, str]]) -> Iterator[tuple[Any, str, str, str]]:
    """(batch, table, column, referred) for each key: SQLite copies each table once."""
    from alembic import op

    for table in dict.fromkeys(t for t, _, _ in keys):
        with op.batch_alter_table(table, naming_convention=_SQLITE_NAMES) as batch:
            for t, column, referred in keys:
                if t == table:
                    yield batch, t, column, referred


def drop_foreign_keys(keys: list[tuple[str, str, str]]) -> None:
    """In a migration script: drop the foreign keys (table, column, referred table)."""
    from alembic import op
    from sqlalchemy import inspect

    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for batch, table, column, referred in _sqlite_batches(keys):
            batch.drop_constraint(f"fk_{table}_{column}_{referred}", type_="foreignkey")
        return
    inspector = inspect(bind)
    for table, column, referred in keys:
        for fk in inspector.get_foreign_keys(table):
            if fk["constrained_columns"] == [column] and fk["referred_table"] == referred:
                op.drop_constraint(fk["name"], table, type_="foreignkey")


def add_foreign_keys(keys: list[tuple[str, str, str]]) -> None:
    """In a migration script: add foreign keys (table, column, referred table's id)."""
    from alembic import op

    if op.get_bind().dialect.name == "sqlite":
        for batch, table, column, referred in _sqlite_batches(keys):
            batch.create_foreign_key(f"fk_{table}_{column}_{referred}", referred, [column],
                                     ["id"])
        return
    for table, column, referred in keys:
        op.create_foreign_key(f"{table}_{column}_fkey", table, referred, [column], ["id"])
