"""Storage of orders, their items, transitions, and the stock they hold."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from ticketing.db import run_last
from ticketing.kit.tenancy import TenantRepository
from ticketing.models import Order, OrderEvent, OrderItem, Product


class OrderRepository(TenantRepository):
    """Orders of one tenant, and the stock counters they move."""

    def by_id(self, order_id: int, *, lock: bool = False) -> Order | None:
        stmt = self.select(Order).where(Order.id == order_id)
        if lock:
            stmt = stmt.with_for_update()
        return self.session.execute(stmt).scalar_one_or_none()

    def by_out_trade_no(self, out_trade_no: str, *, lock: bool = False) -> Order | None:
        stmt = self.select(Order).where(Order.out_trade_no == out_trade_no)
        if lock:
            stmt = stmt.with_for_update()
        return self.session.execute(stmt).scalar_one_or_none()

    def by_idempotency_key(self, user_id: int, key: str) -> Order | None:
        stmt = self.select(Order).where(Order.user_id == user_id, Order.idempotency_key == key)
        return self.session.execute(stmt).scalar_one_or_none()

    def items(self, order_id: int) -> list[OrderItem]:
        stmt = self.select(OrderItem).where(OrderItem.order_id == order_id).order_by(OrderItem.id)
        return list(self.session.execute(stmt).scalars())

    def add_items(self, rows: list[dict[str, Any]]) -> list[OrderItem]:
        stmt = insert(OrderItem).returning(OrderItem, sort_by_parameter_order=True)
        return list(self.session.scalars(stmt, rows))

    def _stock(self, product_pk: int, condition: Any, **values: Any) -> bool:
        stmt = self.update(Product).where(Product.id == product_pk, condition).values(**values)
        return self.session.execute(stmt).rowcount == 1

    def reserve(self, product_pk: int, qty: int) -> bool:
        """Hold `qty` units if that many are free; compare-and-set, no lock needed."""
        return self._stock(
            product_pk, Product.stock - Product.reserved >= qty, reserved=Product.reserved + qty
        )

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
        return self._stock(
            product_pk, Product.stock - Product.reserved >= qty,
            stock=Product.stock - qty, sold=Product.sold + qty,
        )

    def set_state(self, order: Order, expected: int, **values: Any) -> bool:
        """Compare-and-set the order's payment state; False if it moved meanwhile."""
        stmt = (
            self.update(Order)
            .where(Order.id == order.id, Order.payment_status == expected)
            .values(**values)
        )
        if self.session.execute(stmt).rowcount != 1:
            return False
        for key, value in values.items():  # mirror the row without a second UPDATE
            set_committed_value(order, key, value)
        return True

    def record_event(self, order_id: int, from_state: int, to_state: int, accepted: bool,
                     reason: str, when: datetime) -> None:
        self.session.execute(insert(OrderEvent).values(
            tenant_id=self.tenant_id, order_id=order_id, from_state=from_state,
            to_state=to_state, accepted=accepted, reason=reason[:200], created_at=when,
        ))


_STOCK_MOVES = "ticketing_stock_moves"


def _apply_stock_moves(session: Session) -> None:
    moves = session.info.pop(_STOCK_MOVES, {})
    for (tenant_id, product_pk), (reserved, stock, sold) in sorted(
        moves.items(), key=lambda kv: kv[0][1]
    ):
        if not (reserved or stock or sold):
            continue
        stmt = (
            update(Product)
            .where(Product.tenant_id == tenant_id, Product.id == product_pk)
            .values(reserved=Product.reserved + reserved, stock=Product.stock + stock,
                    sold=Product.sold + sold)
        )
        if session.execute(stmt).rowcount != 1:
            raise RuntimeError(f"product {product_pk} vanished under a stock move")


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
