"""Read-only queries the invariant checker needs, one tenant at a time.

Aggregates are computed by the database (GROUP BY), so a check over many orders
reads a few rows per product and per order, not every ticket.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from ticketing.kit.tenancy import TenantRepository
from ticketing.models import (
    Notification,
    Order,
    OrderItem,
    PaymentTransaction,
    Product,
    Refund,
    Tenant,
    Ticket,
)


def all_tenants(session: Session) -> list[tuple[int, str]]:
    """(id, slug) of every tenant; the checker is the one reader spanning tenants."""
    return [(r[0], r[1]) for r in session.execute(select(Tenant.id, Tenant.slug).order_by(Tenant.id))]


class AuditRepository(TenantRepository):
    """What the checker reads about one tenant."""

    def _rows(self, stmt: Any) -> Sequence[Any]:
        return self.session.execute(stmt).all()

    def products(self) -> Sequence[Any]:
        return self._rows(self.select(Product, Product.id, Product.product_id, Product.stock,
                                      Product.reserved, Product.sold, Product.stock_loaded)
                          .order_by(Product.id))

    def units_by_product_and_status(self) -> Sequence[Any]:
        """(product_pk, order status, units) over every order item of the tenant."""
        stmt = (self.select(OrderItem, OrderItem.product_pk, Order.status,
                            func.sum(OrderItem.quantity))
                .join(Order, Order.id == OrderItem.order_id)
                .group_by(OrderItem.product_pk, Order.status))
        return self._rows(stmt)

    def orders(self) -> Sequence[Any]:
        return self._rows(self.select(Order, Order.id, Order.status, Order.payment_status,
                                      Order.total_amount, Order.needs_refund,
                                      Order.transaction_id).order_by(Order.id))

    def items(self) -> Sequence[Any]:
        return self._rows(self.select(OrderItem, OrderItem.id, OrderItem.order_id,
                                      OrderItem.quantity, OrderItem.amount))

    def live_tickets_by_item(self) -> Sequence[Any]:
        """(ticket's order_id, order_item_id, live tickets, misplaced) per item with tickets.

        A ticket is misplaced when its unit index is outside its item's quantity or its
        item belongs to another order.
        """
        misplaced = case((Ticket.unit_index < 0, 1), (Ticket.unit_index >= OrderItem.quantity, 1),
                         (OrderItem.order_id != Ticket.order_id, 1), else_=0)
        stmt = (self.select(Ticket, Ticket.order_id, Ticket.order_item_id, func.count(),
                            func.sum(misplaced))
                .join(OrderItem, OrderItem.id == Ticket.order_item_id)
                .where(Ticket.status != "VOID")
                .group_by(Ticket.order_id, Ticket.order_item_id))
        return self._rows(stmt)

    def payments(self) -> Sequence[Any]:
        return self._rows(self.select(
            PaymentTransaction, PaymentTransaction.id, PaymentTransaction.gateway,
            PaymentTransaction.gateway_txn_id, PaymentTransaction.order_id,
            PaymentTransaction.amount, PaymentTransaction.status, PaymentTransaction.applied,
            PaymentTransaction.refunded).order_by(PaymentTransaction.id))

    def successful_refunds(self) -> Sequence[Any]:
        """(payment_transaction_id, count) of refunds that returned money."""
        return self._rows(self.select(Refund, Refund.payment_transaction_id, func.count())
                          .where(Refund.status == "SUCCESS")
                          .group_by(Refund.payment_transaction_id))

    def notification_outcomes(self) -> Sequence[Any]:
        return self._rows(self.select(Notification, Notification.outcome, func.count(),
                                      func.min(Notification.id))
                          .group_by(Notification.outcome))

