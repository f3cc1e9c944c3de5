"""kit.sql.Pipeline: queued writes run in order, in the caller's transaction, and fail whole.

On PostgreSQL they go out in one libpq pipeline (one round trip, counted here from
libpq's protocol trace), an INSERT of many rows as one statement over a JSON array of
them; on SQLite straight to `sqlite3`, one after another. Both must give
the same rows, row counts and ids, and a failure anywhere among them must leave
nothing of any of them once the transaction rolls back.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from alembic import command
from sqlalchemy import bindparam, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from tests.wire import client_messages, exchanges, since_last_begin
from ticketing.db import Database, json_text
from ticketing.migrate import alembic_config, upgrade
from ticketing.kit.clock import utcnow
from ticketing.kit.sql import Pipeline, RowCountError
from ticketing.models import GatewayConfig, Notification, Product, Tenant
from ticketing.tenant.demo import load_demo

_NOTES, _PRODUCTS = Notification.__table__, Product.__table__
_ADD_NOTE = insert(_NOTES).returning(_NOTES.c.id, _NOTES.c.request_id,
                                   sort_by_parameter_order=True)
_ADD_PLAIN = insert(_NOTES)
_SELL = (update(_PRODUCTS)
         .where(_PRODUCTS.c.tenant_id == bindparam("w_tenant"),
                _PRODUCTS.c.product_id == bindparam("w_product"))
         .values(sold=_PRODUCTS.c.sold + bindparam("d_sold"),
                 stock=_PRODUCTS.c.stock - bindparam("d_sold")))


def _tenant(db: Database) -> int:
    with db.transaction() as session:
        return session.execute(select(Tenant.id).where(Tenant.slug == "default")).scalar_one()


def _note(tenant_id: int, tag: str, when=None) -> dict:
    return {"tenant_id": tenant_id, "gateway": "mock", "event_type": "payment",
            "gateway_txn_id": f"W-{tag}", "order_id": None, "amount": 1,
            "trade_status": "SUCCESS", "verification": "verified", "outcome": "processed",
            "http_status": 200, "detail": None, "headers": {"x-tag": tag}, "body": "{}",
            "request_id": tag, "received_at": when or utcnow()}


def _notes(db: Database) -> list[tuple[str, dict]]:
    with db.transaction() as session:
        return [(r.request_id, r.headers) for r in session.execute(
            select(_NOTES.c.request_id, _NOTES.c.headers).order_by(_NOTES.c.id))]


def _sold(db: Database, tenant_id: int) -> dict[int, tuple[int, int]]:
    with db.transaction() as session:
        return {r.product_id: (r.sold, r.stock) for r in session.execute(
            select(_PRODUCTS.c.product_id, _PRODUCTS.c.sold, _PRODUCTS.c.stock)
            .where(_PRODUCTS.c.tenant_id == tenant_id))}


def test_writes_run_in_order_and_return_their_rows_in_order(db):
    tenant = _tenant(db)
    before = _sold(db, tenant)
    tags = [f"n{i}" for i in range(7)]
    when = utcnow() - timedelta(minutes=5)
    with db.transaction() as session:
        pipeline = Pipeline(session)
        noted = pipeline.write(_ADD_NOTE, [_note(tenant, t, when) for t in tags], expect=7)
        plain = pipeline.write(_ADD_PLAIN, [_note(tenant, "plain")])
        sold = pipeline.write(_SELL, [{"w_tenant": tenant, "w_product": 101, "d_sold": 2},
                                  {"w_tenant": tenant, "w_product": 102, "d_sold": 1},
                                  {"w_tenant": tenant, "w_product": 999, "d_sold": 1}])
        nothing = pipeline.write(_SELL, [])
        assert noted.rows == [] and sold.rowcount == -1  # nothing sent before the flush
        pipeline.flush()
        stored_at = session.execute(select(_NOTES.c.received_at).where(
            _NOTES.c.request_id == "n0")).scalar_one()
    assert [row[1] for row in noted.rows] == tags  # ids in the order the rows were given
    ids = [row[0] for row in noted.rows]
    assert ids == sorted(ids) and len(set(ids)) == 7
    assert (plain.rowcount, sold.rowcount, nothing.rowcount) == (1, 2, 0)
    assert _notes(db) == [(t, {"x-tag": t}) for t in tags] + [("plain", {"x-tag": "plain"})]
    assert stored_at == when  # the column type's conversions applied, as SQLAlchemy would
    after = _sold(db, tenant)
    assert after[101] == (before[101][0] + 2, before[101][1] - 2)
    assert after[102] == (before[102][0] + 1, before[102][1] - 1)


def test_json_values_of_any_shape_are_stored_as_given_by_a_many_row_insert(db):
    """Lists, ragged lists of lists, nesting, null: each row's own value, on both
    databases."""
    tenant = _tenant(db)
    shapes = [[{"code": "metro"}, {"code": "bus"}], [[1, 2], [3]], {"x": [1, {"y": None}]},
              [], "text", 7]
    with db.transaction() as session:
        pipeline = Pipeline(session)
        pipeline.write(_ADD_PLAIN, [{**_note(tenant, f"s{i}"), "headers": shape}
                                    for i, shape in enumerate(shapes)], expect=len(shapes))
        pipeline.flush()
    assert _notes(db) == [(f"s{i}", shape) for i, shape in enumerate(shapes)]


def test_json_text_is_the_engines_serializer_s_on_every_path(db):
    """One row or many, pipelined or through SQLAlchemy: the text stored is what the
    engine's `json_serializer` (`db.json_text`) makes of the value."""
    tenant = _tenant(db)
    value = {"x-tag": "ü", "n": [1, None]}
    with db.transaction() as session:
        pipeline = Pipeline(session)
        pipeline.write(_ADD_PLAIN, [{**_note(tenant, f"t{i}"), "headers": value}
                                    for i in range(3)], expect=3)
        pipeline.write(_ADD_PLAIN, [{**_note(tenant, "t-one"), "headers": value}], expect=1)
        pipeline.flush()
        session.execute(_ADD_PLAIN, {**_note(tenant, "t-core"), "headers": value})
    with db.transaction() as session:
        texts = session.execute(text(
            "SELECT CAST(headers AS TEXT) FROM notifications WHERE request_id LIKE 't%' "
            "ORDER BY id")).scalars().all()
    assert texts == [json_text(value)] * 5 == ['{"x-tag":"ü","n":[1,null]}'] * 5


def test_a_json_null_stays_json_null_in_a_many_row_insert(db):
    """SQLAlchemy stores None in a JSON column as JSON null, not SQL NULL (a NOT NULL
    column takes it); so does a many-row insert."""
    tenant = _tenant(db)
    with db.transaction() as session:
        pipeline = Pipeline(session)
        pipeline.write(_ADD_PLAIN, [{**_note(tenant, f"z{i}"), "headers": None}
                                    for i in range(3)], expect=3)
        pipeline.flush()
    with db.transaction() as session:
        assert session.execute(select(func.count()).where(
            _NOTES.c.headers.is_(None))).scalar_one() == 0
    assert _notes(db) == [(f"z{i}", None) for i in range(3)]


def test_values_of_every_kind_are_stored_as_given_by_a_many_row_insert(db):
    """Text that JSON or SQL would escape, integers past a double's precision, an
    offset other than UTC, microseconds, NULL and empty text, in many rows at once."""
    tenant = _tenant(db)
    texts = ['quote " and \\ backslash', "it's", "line\nbreak\ttab", "ünïcødé 票 🚇", "",
             "{\"not\": \"json\"}", "%(rows)s :rows ?"]
    base = datetime(2026, 12, 2, 20, 5, 46, 123456, tzinfo=timezone(timedelta(hours=8)))
    rows = [{**_note(tenant, f"k{i}", base + timedelta(microseconds=i)), "body": body,
             "amount": 2**62 + i, "detail": None if i % 2 else body}
            for i, body in enumerate(texts)]
    with db.transaction() as session:
        pipeline = Pipeline(session)
        pipeline.write(_ADD_PLAIN, rows, expect=len(rows))
        pipeline.flush()
    with db.transaction() as session:
        stored = session.execute(
            select(_NOTES.c.body, _NOTES.c.amount, _NOTES.c.detail, _NOTES.c.received_at)
            .order_by(_NOTES.c.id)).all()
    assert [tuple(r) for r in stored] == [
        (r["body"], r["amount"], r["detail"], r["received_at"]) for r in rows]


def test_a_row_count_other_than_expected_fails_the_whole_transaction(db):
    tenant = _tenant(db)
    before = _sold(db, tenant)
    with pytest.raises(RuntimeError, match="1 rows written where 2 were expected"):
        with db.transaction() as session:
            pipeline = Pipeline(session)
            pipeline.write(_ADD_NOTE, [_note(tenant, "lost")])
            pipeline.write(_SELL, [{"w_tenant": tenant, "w_product": 101, "d_sold": 1},
                               {"w_tenant": tenant, "w_product": 999, "d_sold": 1}], expect=2)
            pipeline.flush()
    assert _notes(db) == [] and _sold(db, tenant) == before


def test_a_database_error_among_the_writes_leaves_none_of_them(db):
    """The second of three writes breaks a CHECK (stock below zero): the first and the
    third are gone too, and the pooled connection serves the next transaction. The
    error is SQLAlchemy's IntegrityError, as for a statement run through it: callers
    that retry a lost unique-key race catch that one."""
    tenant = _tenant(db)
    before = _sold(db, tenant)
    with pytest.raises(IntegrityError) as raised:
        with db.transaction() as session:
            pipeline = Pipeline(session)
            pipeline.write(_ADD_NOTE, [_note(tenant, "first")])
            pipeline.write(_SELL, [{"w_tenant": tenant, "w_product": 101, "d_sold": 10**12}])
            pipeline.write(_ADD_NOTE, [_note(tenant, "third")])
            pipeline.flush()
    assert isinstance(raised.value.orig, db.engine.dialect.loaded_dbapi.IntegrityError)
    assert _notes(db) == [] and _sold(db, tenant) == before
    with db.transaction() as session:
        pipeline = Pipeline(session)
        pipeline.write(_ADD_NOTE, [_note(tenant, "next")])
        pipeline.flush()
    assert _notes(db) == [("next", {"x-tag": "next"})]


def test_a_unique_key_taken_by_a_queued_write_is_an_integrity_error(db):
    """What `flows.in_transaction` retries: the loser of a race for one gateway
    transaction id meets a UNIQUE key (here a tenant's gateway) in a pipelined INSERT."""
    tenant = _tenant(db)
    row = {"tenant_id": tenant, "gateway": "w-taken", "config": {}, "secrets": {},
           "updated_at": utcnow()}
    for attempt in (1, 2):
        with db.transaction() as session:
            pipeline = Pipeline(session)
            pipeline.write(insert(GatewayConfig.__table__), [row])
            if attempt == 1:
                pipeline.flush()
                continue
            with pytest.raises(IntegrityError):
                pipeline.flush()
            session.rollback()


def test_a_many_row_insert_with_on_conflict_keeps_its_clause(db):
    """An INSERT … ON CONFLICT of several rows is not rewritten into the one-statement
    JSON form (which would lose the clause, and once raised building it): each row is a
    command of its own, and a row that conflicts is skipped, not an error."""
    tenant = _tenant(db)
    module = postgresql if db.dialect == "postgresql" else sqlite
    upsert = module.insert(GatewayConfig.__table__).on_conflict_do_nothing(
        index_elements=["tenant_id", "gateway"])
    rows = [{"tenant_id": tenant, "gateway": name, "config": {}, "secrets": {},
             "updated_at": utcnow()} for name in ("w-one", "w-two", "w-one")]
    with db.transaction() as session:
        pipeline = Pipeline(session)
        written = pipeline.write(upsert, rows)
        pipeline.flush()
    assert written.rowcount == 2
    with db.transaction() as session:
        names = session.execute(select(GatewayConfig.gateway).where(
            GatewayConfig.tenant_id == tenant, GatewayConfig.gateway.like("w-%"))).scalars()
        assert sorted(names) == ["w-one", "w-two"]


def test_a_missing_python_side_default_is_refused_not_left_null(db):
    """SQLAlchemy fills Python-side defaults in; a pipelined insert could not, so a row
    without such a column is refused on every database alike."""
    from ticketing.models import PaymentTransaction

    tenant = _tenant(db)
    row = {"tenant_id": tenant, "gateway": "mock", "gateway_txn_id": "W-d", "order_id": None,
           "amount": 1, "status": "SUCCESS", "outcome": "processed", "response": {},
           "created_at": utcnow()}  # no `applied`, no `refunded`
    with pytest.raises(ValueError, match="no value for"):
        with db.transaction() as session:
            pipeline = Pipeline(session)
            pipeline.write(insert(GatewayConfig.__table__), [row])
            pipeline.flush()


def test_on_postgresql_the_writes_are_one_round_trip(pg_url):
    db = Database(pg_url, pool_size=1)
    try:
        with db.transaction() as session:
            load_demo(session)
        tenant = _tenant(db)
        with client_messages(db) as sent:
            with db.transaction() as session:
                pipeline = Pipeline(session)
                pipeline.write(_ADD_NOTE, [_note(tenant, f"r{i}") for i in range(5)])
                pipeline.write(_ADD_PLAIN, [_note(tenant, f"p{i}") for i in range(3)])
                pipeline.write(_SELL, [{"w_tenant": tenant, "w_product": p, "d_sold": 1}
                                       for p in (101, 102)])
                session.execute(select(Tenant.id).where(Tenant.id == tenant))  # on its own
                pipeline.flush()
        kinds = since_last_begin(sent)
        # the SELECT, each INSERT once for all its rows, the UPDATE once per row
        assert kinds.count("Execute") == 1 + 1 + 1 + 2, kinds
        assert len(_notes(db)) == 8
        # BEGIN and the SELECT (psycopg's), the writes (one exchange), COMMIT
        assert exchanges(kinds) == 4, kinds
    finally:
        db.dispose()


def _sell(tenant: int, *products: int) -> list[dict]:
    return [{"w_tenant": tenant, "w_product": p, "d_sold": 1} for p in products]


def test_a_committing_flush_checks_its_row_counts_before_the_commit(db):
    """`flush(commit=True)`: a write that changed a row count other than expected fails
    the transaction, and nothing of it is committed; on PostgreSQL the database itself
    checked it (`ticketing_expect_rows`) and skipped the COMMIT sent with the writes.
    The connection serves the next transaction."""
    tenant = _tenant(db)
    before = _sold(db, tenant)
    with pytest.raises(RowCountError, match=r"rows written where \d+ were expected "
                                            r"\(products\)") as raised:
        with db.transaction() as session:
            pipeline = Pipeline(session)
            pipeline.write(_ADD_NOTE, [_note(tenant, "lost")], expect=1)
            sold = pipeline.write(_SELL, _sell(tenant, 101, 999), expect=2)
            pipeline.flush(commit=True)
    assert raised.value.queued is sold
    if db.dialect == "postgresql":
        assert isinstance(raised.value.__cause__, psycopg.Error)
        assert raised.value.__cause__.sqlstate == "TK001"
    assert _notes(db) == [] and _sold(db, tenant) == before
    with db.transaction() as session:
        pipeline = Pipeline(session)
        pipeline.write(_ADD_NOTE, [_note(tenant, "next")], expect=1)
        pipeline.write(_SELL, _sell(tenant, 101, 102), expect=2)
        pipeline.flush(commit=True)
    assert _notes(db) == [("next", {"x-tag": "next"})]
    after = _sold(db, tenant)
    assert {p: after[p][0] - before[p][0] for p in (101, 102)} == {101: 1, 102: 1}


def test_a_committing_flush_refuses_a_count_it_cannot_check_per_parameter_set(db):
    """The database checks one row per parameter set of a write that returns none: any
    other expectation is refused before anything is sent, on every database."""
    tenant = _tenant(db)
    with pytest.raises(ValueError, match="one row per parameter set"):
        with db.transaction() as session:
            pipeline = Pipeline(session)
            pipeline.write(_SELL, _sell(tenant, 101, 102), expect=1)
            pipeline.flush(commit=True)
    with pytest.raises(ValueError, match="one row per parameter set"):
        with db.transaction() as session:
            pipeline = Pipeline(session)
            pipeline.write(_SELL.returning(_PRODUCTS.c.sold), _sell(tenant, 101), expect=1)
            pipeline.flush(commit=True)
    assert _notes(db) == []


def test_on_postgresql_a_committing_flush_commits_in_its_round_trip(pg_url):
    """BEGIN, the writes and COMMIT in one exchange: what it wrote is seen by another
    connection before the transaction's block has ended, and the block's end sends
    nothing more."""
    db, other = Database(pg_url, pool_size=1), Database(pg_url, pool_size=1)
    try:
        with db.transaction() as session:
            load_demo(session)
        tenant = _tenant(db)
        before = _sold(db, tenant)
        with client_messages(db) as sent:
            with db.transaction() as session:
                pipeline = Pipeline(session)
                pipeline.write(_ADD_NOTE, [_note(tenant, f"c{i}") for i in range(3)], expect=3)
                pipeline.write(_SELL, _sell(tenant, 101, 102), expect=2)
                pipeline.flush(commit=True)
                assert [tag for tag, _ in _notes(other)] == ["c0", "c1", "c2"]  # committed
                assert _sold(other, tenant) != before
        kinds = since_last_begin(sent)
        assert exchanges(kinds) == 1 and "Query" not in kinds, kinds
        assert '"COMMIT"' in [m for m in sent if m.startswith("Parse")][-1]
    finally:
        db.dispose()
        other.dispose()


def test_on_postgresql_a_statement_after_a_committing_flush_fails_and_is_undone(pg_url):
    """A statement run after the flush that committed would begin a transaction of its
    own: the block's end refuses it, and it is rolled back; the flushed writes stay."""
    db = Database(pg_url, pool_size=2)
    try:
        with db.transaction() as session:
            load_demo(session)
        tenant = _tenant(db)
        for transaction in (db.transaction, db.held().transaction):
            with pytest.raises(RuntimeError, match="after its transaction's committing flush"):
                with transaction() as session:
                    pipeline = Pipeline(session)
                    pipeline.write(_ADD_NOTE, [_note(tenant, "kept")], expect=1)
                    pipeline.flush(commit=True)
                    pipeline.write(_ADD_NOTE, [_note(tenant, "stray")], expect=1)
                    pipeline.flush()
            assert [tag for tag, _ in _notes(db)][-1] == "kept"
        assert [tag for tag, _ in _notes(db)] == ["kept", "kept"]
    finally:
        db.dispose()


def test_the_row_count_check_comes_and_goes_with_its_migration(pg_url):
    def present() -> bool:
        with psycopg.connect(pg_url.replace("postgresql+psycopg", "postgresql")) as conn:
            return conn.execute("SELECT count(*) FROM pg_proc "
                                "WHERE proname = 'ticketing_expect_rows'").fetchone()[0] == 1

    assert present()
    command.downgrade(alembic_config(pg_url), "0005")
    assert not present()
    upgrade(pg_url)
    assert present()
