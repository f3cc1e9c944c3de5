"""kit.pgpipe on a real PostgreSQL: its prepared statements outlive what psycopg does
to them, a failure leaves the connection usable, a pipeline too large for the
socket's buffers still completes, and a transaction marked `plan_once` runs its
lookups on one plan without the setting reaching any other transaction.

What the pipelined statements return, and that they go in one exchange with BEGIN,
is tested through `kit.sql.Pipeline` in tests/test_writes.py and tests/payment.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import bindparam, literal_column, select, text, update
from sqlalchemy.exc import DBAPIError, ProgrammingError, StatementError

from tests.wire import client_messages, exchanges, since_last_begin
from ticketing.db import Database
from ticketing.kit import pgpipe
from ticketing.kit.sql import ListLookup, Pipeline, plan_once
from ticketing.models import Notification, Product, Tenant
from ticketing.tenant.demo import load_demo

_NOTES, _PRODUCTS, _TENANTS = Notification.__table__, Product.__table__, Tenant.__table__
_TENANT = select(_TENANTS.c.id, _TENANTS.c.slug).where(_TENANTS.c.slug == bindparam("slug"))
_PRODUCT = (select(_PRODUCTS.c.product_id, _PRODUCTS.c.stock)
            .where(_PRODUCTS.c.tenant_id == bindparam("t"),
                   _PRODUCTS.c.product_id == bindparam("p")))
_RESERVED = (select(_PRODUCTS.c.reserved)
             .where(_PRODUCTS.c.tenant_id == bindparam("t"),
                    _PRODUCTS.c.product_id == bindparam("p")))
_RESERVE = (update(_PRODUCTS)
            .where(_PRODUCTS.c.tenant_id == bindparam("w_t"),
                   _PRODUCTS.c.product_id == bindparam("w_p"))
            .values(reserved=_PRODUCTS.c.reserved + bindparam("d")))


class Boom(Exception):
    pass


@pytest.fixture
def pg(pg_url: str) -> Iterator[Database]:
    db = Database(pg_url, pool_size=1)  # one connection: every transaction reuses it
    with db.transaction() as session:
        load_demo(session)
    yield db
    db.dispose()


def _read_tenant(db: Database) -> int:
    with db.transaction() as session:
        pipeline = Pipeline(session)
        found = pipeline.read(_TENANT, {"slug": "default"})
        pipeline.flush()
        return found.rows[0].id  # type: ignore[no-any-return]


def _ours(db: Database) -> list[str]:
    """The connection's prepared statements of kit.pgpipe, as the server lists them."""
    with db.transaction() as session:
        return sorted(session.execute(text(
            "SELECT name FROM pg_prepared_statements WHERE name LIKE '\\_tk%'")).scalars())


def _psycopg_prepares_something(db: Database) -> None:
    """Give psycopg a prepared statement of its own (it prepares what runs 5 times): at
    a rollback it then deallocates them all, ours too."""
    with db.transaction() as session:
        for _ in range(6):
            session.execute(select(_TENANTS.c.id).where(_TENANTS.c.slug == "default"))


def test_a_statement_is_prepared_once_and_reused(pg):
    _read_tenant(pg)
    first = _ours(pg)
    assert len(first) == 1
    for _ in range(3):
        _read_tenant(pg)
    assert _ours(pg) == first


@pytest.mark.parametrize("how", ["transaction", "savepoint"])
def test_statements_are_prepared_again_after_psycopg_deallocates_them(pg, how):
    tenant = _read_tenant(pg)
    _psycopg_prepares_something(pg)
    if how == "transaction":
        with pytest.raises(Boom), pg.transaction() as session:
            session.execute(select(_TENANTS.c.id))
            raise Boom
    else:
        with pg.transaction() as session:
            with pytest.raises(Boom), session.begin_nested():
                session.execute(select(_TENANTS.c.id))
                raise Boom
    assert _read_tenant(pg) == tenant  # "prepared statement does not exist" otherwise
    assert len(_ours(pg)) == 1  # the old name closed, not left behind


def test_names_do_not_pile_up_over_many_rollbacks(pg):
    for _ in range(20):
        _read_tenant(pg)
        with pytest.raises(Boom), pg.transaction() as session:
            session.execute(select(_TENANTS.c.id))
            raise Boom
    _read_tenant(pg)
    assert len(_ours(pg)) == 1


def test_statements_deallocated_unannounced_fail_once_then_are_prepared_again(pg):
    """Should a connection lose them some other way, the transaction that meets that
    fails (and rolls back whole), and the next one prepares them again."""
    tenant = _read_tenant(pg)
    with pg.transaction() as session:
        session.connection().connection.driver_connection.pgconn.exec_(b"DEALLOCATE ALL")
    with pytest.raises(ProgrammingError, match="does not exist"):
        _read_tenant(pg)
    assert _read_tenant(pg) == tenant


def test_a_statement_that_fails_to_prepare_is_not_taken_for_prepared(pg):
    bad = select(_TENANTS.c.id).where(text("no_such_column = :slug"))
    for _ in range(2):  # prepared anew, and failing the same way, each time
        with pytest.raises(ProgrammingError, match="no_such_column"), \
                pg.transaction() as session:
            pipeline = Pipeline(session)
            pipeline.read(bad, {"slug": "x"})
            pipeline.flush()
    assert _ours(pg) == []


def test_a_statement_after_a_failed_one_is_prepared_when_next_sent(pg_url):
    """A Parse behind a failure is skipped by the server: it must not count as made.
    (On a bare connection: the engine would forget every name at the rollback.)"""
    with psycopg.connect(pg_url) as driver:
        read = b"SELECT count(*) FROM tenants WHERE slug = $1"
        with pytest.raises(psycopg.errors.DivisionByZero):
            pgpipe.send(driver, [pgpipe.Statement(b"SELECT 1 / $1", [[0]]),
                                 pgpipe.Statement(read, [["x"]])])
        driver.rollback()
        found = pgpipe.Statement(read, [["x"], ["y"]])
        pgpipe.send(driver, [found])
        assert (found.rows, found.rowcount) == ([(0,), (0,)], 2)


def test_a_value_the_driver_cannot_send_fails_before_anything_is_sent(pg):
    tenant = _read_tenant(pg)
    with client_messages(pg) as sent:
        with pytest.raises(StatementError), pg.transaction() as session:
            pipeline = Pipeline(session)
            pipeline.read(_PRODUCT, {"t": tenant, "p": 101})
            pipeline.read(_PRODUCT, {"t": tenant, "p": object()})
            pipeline.flush()
    assert not any('"BEGIN"' in m for m in sent)  # nothing went out
    assert _read_tenant(pg) == tenant  # and the connection is as good as before


def test_a_pipeline_larger_than_the_socket_buffers_completes(pg):
    """Thousands of commands: the server answers while they are still being written,
    and both sides keep reading. Each reads what the ones before it wrote."""
    tenant = _read_tenant(pg)
    with pg.transaction() as session:
        pipeline = Pipeline(session)
        moved, reads = [], []
        for i in range(2000):  # one unit reserved, read back, released
            moved.append(pipeline.write(_RESERVE, [{"w_t": tenant, "w_p": 101, "d": 1}]))
            reads.append(pipeline.read(_RESERVED, {"t": tenant, "p": 101}))
            moved.append(pipeline.write(_RESERVE, [{"w_t": tenant, "w_p": 101, "d": -1}]))
        pipeline.flush()
    assert [m.rowcount for m in moved] == [1] * 4000
    assert {r.rows[0].reserved for r in reads} == {1}
    with pg.transaction() as session:
        assert session.execute(_RESERVED, {"t": tenant, "p": 101}).one().reserved == 0


def test_a_lost_connection_is_not_pooled_again(pg):
    tenant = _read_tenant(pg)
    with pytest.raises(DBAPIError) as raised, pg.transaction() as session:
        driver = session.connection().connection.driver_connection
        killer = psycopg.connect(str(pg.engine.url.set(drivername="postgresql")
                                     .render_as_string(hide_password=False)), autocommit=True)
        killer.execute("SELECT pg_terminate_backend(%s)", [driver.info.backend_pid])
        killer.close()
        pipeline = Pipeline(session)
        pipeline.read(_PRODUCT, {"t": tenant, "p": 101})
        pipeline.flush()
    assert raised.value.connection_invalidated
    assert _read_tenant(pg) == tenant  # a new connection


def test_begin_goes_with_the_first_pipeline(pg):
    with client_messages(pg) as sent:
        _read_tenant(pg)
    kinds = since_last_begin(sent)
    assert exchanges(kinds) == 2 and kinds.count("Query") == 1, kinds  # one exchange, COMMIT


def test_placeholders_are_numbered_as_psycopg_would_number_them():
    from ticketing.kit.sql import _numbered

    assert _numbered("SELECT %(a)s, %(b)s::INT, %(a)s WHERE x LIKE 'y%%'") == (
        b"SELECT $1, $2::INT, $1 WHERE x LIKE 'y%'", ("a", "b"))


def test_the_sync_is_called_through_psycopgs_own_libpq():
    """On Linux the Sync goes through ctypes (no GIL held while the write wakes the
    server): the library found must be the one psycopg's connections belong to."""
    import sys

    assert sys.platform == "linux"  # where the service runs, and these tests
    assert pgpipe._PIPELINE_SYNC is not None


def test_a_sync_libpq_refuses_is_an_operational_error(pg_url):
    with psycopg.connect(pg_url) as driver:  # not in pipeline mode: libpq refuses the Sync
        with pytest.raises(psycopg.OperationalError, match="failed to sync pipeline"):
            pgpipe._pipeline_sync(driver.pgconn)
        assert driver.execute("SELECT 1").fetchone() == (1,)  # and the connection is usable
    with pytest.raises(psycopg.OperationalError, match="closed"):
        pgpipe._pipeline_sync(driver.pgconn)  # closed: no pointer to hand to libpq


_MODE = select(literal_column("current_setting('plan_cache_mode')").label("mode"))
_TENANTS_BY_ID = ListLookup(select(_TENANTS.c.id, _TENANTS.c.slug), _TENANTS.c.id, "ids",
                            order_by=_TENANTS.c.id)


def _mode(db: Database, *, once: bool, fail: bool = False, orm_first: bool = False) -> str:
    """plan_cache_mode as a pipeline of a transaction (marked `plan_once` or not) sees it."""
    with db.transaction() as session:
        if orm_first:  # the transaction is open before the pipeline
            session.execute(select(_TENANTS.c.id))
        if once:
            plan_once(session)
        pipeline = Pipeline(session)
        seen = pipeline.read(_MODE, {})
        pipeline.flush()
        if fail:
            raise Boom
        return seen.rows[0].mode  # type: ignore[no-any-return]


def test_plan_once_holds_for_its_transaction_and_no_other(pg):
    assert _mode(pg, once=False) == "auto"
    assert _mode(pg, once=True) == "force_generic_plan"
    assert _mode(pg, once=False) == "auto"  # the same connection (the pool holds one)
    with pytest.raises(Boom):
        _mode(pg, once=True, fail=True)
    assert _mode(pg, once=False) == "auto"
    # sent with the BEGIN only: a transaction already open is left as it is
    assert _mode(pg, once=True, orm_first=True) == "auto"
    with pg.transaction() as session:
        assert session.execute(text("SHOW plan_cache_mode")).scalar_one() == "auto"


def _plans(db: Database, *, once: bool, times: int) -> tuple[int, int]:
    """(generic, custom) plans the server made for the list lookup, run `times` times."""
    tenant = _read_tenant(db)
    for _ in range(times):
        with db.transaction() as session:
            if once:
                plan_once(session)
            pipeline = Pipeline(session)
            found = _TENANTS_BY_ID.queue(pipeline, {"ids": [tenant, tenant + 1000]})
            pipeline.flush()
            assert [row.id for row in found.rows] == [tenant]
    with db.transaction() as session:
        generic, custom = session.execute(text(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
            "WHERE name LIKE '\\_tk%' AND statement LIKE '%unnest%'")).one()
        return generic, custom


@pytest.mark.parametrize("once", [True, False])
def test_a_list_lookup_is_planned_once_in_a_plan_once_transaction(pg, once):
    """Without it the server plans the statement anew for at least its first five runs
    (then, for this one, as long as a plan for the values at hand looks cheaper)."""
    generic, custom = _plans(pg, once=once, times=8)
    if once:
        assert (generic, custom) == (8, 0)
    else:
        assert custom >= 5 and generic + custom == 8
