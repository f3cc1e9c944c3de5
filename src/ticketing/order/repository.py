"""Storage of orders, their items, transitions, and the stock they hold."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from ticketing.db import run_last
from ticketing.kit.sql import (ListLookup, Pipeline, Queued, execute_many, grouped, no_index_key,
                               run)
from ticketing.kit.tenancy import TenantRepository
from ticketing.models import Order, OrderEvent, OrderItem, Product

# The statements of the payment and order paths, built once (see kit.sql.run).
_ORDERS, _ITEMS, _PRODUCTS = Order.__table__, OrderItem.__table__, Product.__table__
_TENANT = bindparam("tenant_id")
_BY_ID = select(Order).where(Order.tenant_id == _TENANT, Order.id == bindparam("order_id"))
# FOR NO KEY UPDATE: serialises everything that changes the order, but not the
# foreign-key checks of rows inserted for it (tickets, events, notifications).
_BY_ID_LOCKED = _BY_ID.with_for_update(key_share=True)
_ITEMS_OF = (select(*_ITEMS.c)
             .where(_ITEMS.c.tenant_id == _TENANT, _ITEMS.c.order_id == bindparam("order_id"))
             .order_by(_ITEMS.c.id))
_ADD_ITEMS = insert(_ITEMS).returning(*_ITEMS.c, sort_by_parameter_order=True)
_ADD_EVENT = insert(OrderEvent.__table__)
_ADD_ORDER = insert(_ORDERS).returning(_ORDERS.c.id, sort_by_parameter_order=True)
_FREE = _PRODUCTS.c.stock - _PRODUCTS.c.reserved >= bindparam("qty")
# UPDATE statements may not bind a parameter under a column's name: w_ for WHERE
_PRODUCT_ROW = ((_PRODUCTS.c.tenant_id == bindparam("w_tenant"))
                & (_PRODUCTS.c.id == bindparam("w_product")))
_RESERVE = update(_PRODUCTS).where(_PRODUCT_ROW, _FREE).values(
    reserved=_PRODUCTS.c.reserved + bindparam("qty"))
_SELL_FREE = update(_PRODUCTS).where(_PRODUCT_ROW, _FREE).values(
    stock=_PRODUCTS.c.stock - bindparam("qty"), sold=_PRODUCTS.c.sold + bindparam("qty"))
_MOVE = update(_PRODUCTS).where(_PRODUCT_ROW).values(
    reserved=_PRODUCTS.c.reserved + bindparam("d_reserved"),
    stock=_PRODUCTS.c.stock + bindparam("d_stock"), sold=_PRODUCTS.c.sold + bindparam("d_sold"))
_SET_STATE: dict[tuple[str, ...], Any] = {}
# Several orders of one tenant, locked in id order (see lock_many), and their items.
# Without statistics SQLite looks 16 or more ids up through ix_orders_tenant_user's
# tenant_id, every order of the tenant, rather than by primary key: `+tenant_id` is
# no index key to it.
_LOCK_MANY = ListLookup(
    select(*_ORDERS.c).where(_ORDERS.c.tenant_id == _TENANT).with_for_update(key_share=True),
    _ORDERS.c.id, "order_ids", order_by=_ORDERS.c.id,
    sqlite_base=select(*_ORDERS.c).where(no_index_key(_ORDERS.c.tenant_id) == _TENANT))
_ITEMS_MANY = ListLookup(select(*_ITEMS.c).where(_ITEMS.c.tenant_id == _TENANT),
                         _ITEMS.c.order_id, "order_ids", order_by=_ITEMS.c.id)

def _set_state_stmt(keys: tuple[str, ...]) -> Any:
    """UPDATE orders SET <keys> WHERE id and payment_status match: one per set of keys."""
    stmt = _SET_STATE.get(keys)
    if stmt is None:
        stmt = _SET_STATE[keys] = update(_ORDERS).where(
            _ORDERS.c.tenant_id == bindparam("w_tenant"), _ORDERS.c.id == bindparam("w_order"),
            _ORDERS.c.payment_status == bindparam("w_expected"),
        ).values({key: bindparam(f"v_{key}") for key in keys})
    return stmt


class OrderRepository(TenantRepository):
    """Orders of one tenant, and the stock counters they move."""

    @staticmethod
    def lock_many(pipeline: Pipeline, keys: list[tuple[int, int]]
                  ) -> Callable[[], dict[tuple[int, int], Any]]:
        """Lock the orders named by (tenant, order id), queued in `pipeline`; once it is
        flushed, the call returns their rows by (tenant, order id).

        Locks are taken tenant by tenant, each tenant's in id order: every path that
        locks several orders does it in this one order, so two batches never deadlock.
        """
        queued = [_LOCK_MANY.queue(pipeline, {"tenant_id": tenant_id, "order_ids": order_ids})
                  for tenant_id, order_ids in grouped(keys)]
        return lambda: {(row.tenant_id, row.id): row for q in queued for row in q.rows}

    @staticmethod
    def items_many(pipeline: Pipeline, keys: list[tuple[int, int]]
                   ) -> Callable[[], dict[int, list[Any]]]:
        """The items of several orders named by (tenant, order id), queued in `pipeline`;
        once it is flushed, the call returns them by order id."""
        queued = [_ITEMS_MANY.queue(pipeline, {"tenant_id": tenant_id, "order_ids": order_ids})
                  for tenant_id, order_ids in grouped(keys)]

        def by_order() -> dict[int, list[Any]]:
            items: dict[int, list[Any]] = {}
            for q in queued:
                for row in q.rows:
                    items.setdefault(row.order_id, []).append(row)
            return items
        return by_order

    @staticmethod
    def set_states(pipeline: Pipeline, moves: list[tuple[Any, dict[str, Any], int]]) -> None:
        """`set_state` for several (order, values, expected state), queued in `pipeline`;
        its flush raises if one of them moved."""
        by_keys: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for order, values, expected in moves:
            params = {f"v_{key}": value for key, value in values.items()}
            params.update(w_tenant=order.tenant_id, w_order=order.id, w_expected=expected)
            by_keys.setdefault(tuple(values), []).append(params)
        for keys, params in by_keys.items():
            pipeline.write(_set_state_stmt(keys), params, expect=len(params))

    @staticmethod
    def record_events(pipeline: Pipeline,
                      events: list[tuple[int, int, int, int, bool, str, datetime]]) -> None:
        """`record_event` for several orders at once, queued in `pipeline`."""
        pipeline.write(_ADD_EVENT, [
            {"tenant_id": tenant_id, "order_id": order_id, "from_state": from_state,
             "to_state": to_state, "accepted": accepted, "reason": reason[:200],
             "created_at": when}
            for tenant_id, order_id, from_state, to_state, accepted, reason, when in events])

    @staticmethod
    def queue_stock_moves(session: Session, pipeline: Pipeline) -> None:
        """The stock moves queued by `move_stock_last` in this transaction, queued in
        `pipeline` instead: sent with them, after them (the hot rows last)."""
        params = _stock_move_params(session)
        if params:
            pipeline.write(_MOVE, params, expect=len(params))

    def by_id(self, order_id: int, *, lock: bool = False) -> Order | None:
        stmt = _BY_ID_LOCKED if lock else _BY_ID
        params = {"tenant_id": self.tenant_id, "order_id": order_id}
        return self.session.execute(stmt, params).scalar_one_or_none()

    def by_out_trade_no(self, out_trade_no: str, *, lock: bool = False) -> Order | None:
        stmt = self.select(Order).where(Order.out_trade_no == out_trade_no)
        if lock:
            stmt = stmt.with_for_update()
        return self.session.execute(stmt).scalar_one_or_none()

    def by_idempotency_key(self, user_id: int, key: str) -> Order | None:
        stmt = self.select(Order).where(Order.user_id == user_id, Order.idempotency_key == key)
        return self.session.execute(stmt).scalar_one_or_none()

    def items(self, order_id: int) -> list[Row[Any]]:
        """The order's items (read-only rows), in the order they were placed."""
        params = {"tenant_id": self.tenant_id, "order_id": order_id}
        return list(run(self.session, _ITEMS_OF, params))

    @staticmethod
    def add_many_in(pipeline: Pipeline, rows: list[dict[str, Any]]) -> Queued:
        """Insert order rows (each names its tenant) in `pipeline`; their ids are its rows."""
        return pipeline.write(_ADD_ORDER, rows, expect=len(rows))

    @staticmethod
    def add_items_in(pipeline: Pipeline, rows: list[dict[str, Any]]) -> Queued:
        """Insert order items (each names its tenant and order) in `pipeline`; its rows are
        theirs, in order."""
        return pipeline.write(_ADD_ITEMS, rows, expect=len(rows))

    @staticmethod
    def reserve_in(pipeline: Pipeline, tenant_id: int, product_pk: int, qty: int) -> Queued:
        """Hold `qty` units if that many are free (compare-and-set, no lock needed), queued
        in `pipeline`: its flush raises RowCountError, naming this write, if they were not."""
        return pipeline.write(_RESERVE, [{"w_tenant": tenant_id, "w_product": product_pk,
                                      "qty": qty}], expect=1)

    def _stock(self, stmt: Any, product_pk: int, qty: int) -> bool:
        params = {"w_tenant": self.tenant_id, "w_product": product_pk, "qty": qty}
        return run(self.session, stmt, params).rowcount == 1

    def move_stock_last(self, product_pk: int, *, reserved: int = 0, stock: int = 0,
                        sold: int = 0) -> None:
        """Queue a change of a product's counters for the end of the transaction.

        Moves of one transaction are summed per product and applied just before COMMIT,
        in product-row order (no deadlocks), so the hot row is locked only briefly. The
        CHECK constraints on products refuse a move that would make a counter negative.
        """
        moves = self.session.info.get(_STOCK_MOVES)
        if moves is None:
            moves = self.session.info[_STOCK_MOVES] = {}
            run_last(self.session, _apply_stock_moves)
        delta = moves.setdefault((self.tenant_id, product_pk), [0, 0, 0])
        delta[0] += reserved
        delta[1] += stock
        delta[2] += sold

    def sell_free(self, product_pk: int, qty: int) -> bool:
        """Sell units that were not held (a late payment for a closed order)."""
        return self._stock(_SELL_FREE, product_pk, qty)

    def set_state(self, order: Order, expected: int, **values: Any) -> bool:
        """Compare-and-set the order's payment state; False if it moved meanwhile."""
        stmt = _set_state_stmt(tuple(values))
        params = {f"v_{key}": value for key, value in values.items()}
        params.update(w_tenant=self.tenant_id, w_order=order.id, w_expected=expected)
        if run(self.session, stmt, params).rowcount != 1:
            return False
        for key, value in values.items():  # mirror the row without a second UPDATE
            set_committed_value(order, key, value)
        return True

    def record_event(self, order_id: int, from_state: int, to_state: int, accepted: bool,
                     reason: str, when: datetime) -> None:
        run(self.session, _ADD_EVENT, {
            "tenant_id": self.tenant_id, "order_id": order_id, "from_state": int(from_state),
            "to_state": int(to_state), "accepted": accepted, "reason": reason[:200],
            "created_at": when,
        })


_STOCK_MOVES = "ticketing_stock_moves"


def _stock_move_params(session: Session) -> list[dict[str, Any]]:
    """The summed moves queued in this transaction (taken: applied once), in product id order."""
    moves = session.info.pop(_STOCK_MOVES, {})
    return [
        {"w_tenant": tenant_id, "w_product": product_pk, "d_reserved": reserved,
         "d_stock": stock, "d_sold": sold}
        for (tenant_id, product_pk), (reserved, stock, sold) in sorted(
            moves.items(), key=lambda kv: kv[0][1])
        if reserved or stock or sold
    ]


def _apply_stock_moves(session: Session) -> None:
    params = _stock_move_params(session)
    if not params:
        return
    # rows are updated in product id order, as everywhere (no deadlocks)
    if execute_many(session.connection(), _MOVE, params) != len(params):
        raise RuntimeError("a product vanished under a stock move")


def pending_orders_due(session: Session, now: datetime, limit: int) -> list[tuple[int, int]]:
    """(tenant_id, order_id) of unpaid orders past expiry, across tenants.

    The expiry job is the one reader that spans tenants; it hands each row back to
    tenant-scoped code. SKIP LOCKED lets several instances share the work.
    """
    stmt = (
        select(Order.tenant_id, Order.id)
        .where(Order.status == "PENDING", Order.expires_at < now)
        .order_by(Order.expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [(row[0], row[1]) for row in session.execute(stmt)]
