"""Storage of gateway transactions and refunds."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert

from ticketing.kit.tenancy import TenantRepository
from ticketing.models import PaymentTransaction, Refund


class PaymentRepository(TenantRepository):
    """Gateway transactions and refunds of one tenant."""

    def txn(self, gateway: str, gateway_txn_id: str) -> PaymentTransaction | None:
        stmt = self.select(PaymentTransaction).where(
            PaymentTransaction.gateway == gateway,
            PaymentTransaction.gateway_txn_id == gateway_txn_id,
        )
        return self.session.execute(stmt).scalar_one_or_none()

    def add_txn(self, **values: Any) -> None:
        """Insert a transaction; UNIQUE (tenant, gateway, txn id) refuses a second one."""
        self.session.execute(insert(PaymentTransaction).values(tenant_id=self.tenant_id, **values))

    def txns_for_order(self, order_id: int) -> list[PaymentTransaction]:
        stmt = (
            self.select(PaymentTransaction)
            .where(PaymentTransaction.order_id == order_id)
            .order_by(PaymentTransaction.id)
        )
        return list(self.session.execute(stmt).scalars())

    def mark_refunded(self, txn_id: int) -> None:
        stmt = self.update(PaymentTransaction).where(PaymentTransaction.id == txn_id)
        self.session.execute(stmt.values(refunded=True))

    def refund_by_no(self, out_refund_no: str, *, lock: bool = False) -> Refund | None:
        stmt = self.select(Refund).where(Refund.out_refund_no == out_refund_no)
        if lock:
            stmt = stmt.with_for_update()
        return self.session.execute(stmt).scalar_one_or_none()

    def refunds_for_order(self, order_id: int) -> list[Refund]:
        stmt = self.select(Refund).where(Refund.order_id == order_id).order_by(Refund.id)
        return list(self.session.execute(stmt).scalars())
