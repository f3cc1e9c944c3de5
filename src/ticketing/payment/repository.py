"""Storage of gateway transactions and refunds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Row, bindparam, insert, select
from sqlalchemy.orm import Session

from ticketing.kit.sql import ListLookup, Pipeline, grouped, run
from ticketing.kit.tenancy import TenantRepository
from ticketing.models import PaymentTransaction, Refund

_TXNS = PaymentTransaction.__table__
_TXN = select(*_TXNS.c).where(
    _TXNS.c.tenant_id == bindparam("tenant_id"), _TXNS.c.gateway == bindparam("gateway"),
    _TXNS.c.gateway_txn_id == bindparam("gateway_txn_id"))
_ADD_TXN = insert(_TXNS)
_RECORDED = ListLookup(select(_TXNS.c.gateway_txn_id).where(
    _TXNS.c.tenant_id == bindparam("tenant_id"), _TXNS.c.gateway == bindparam("gateway")),
    _TXNS.c.gateway_txn_id, "gateway_txn_ids")


class PaymentRepository(TenantRepository):
    """Gateway transactions and refunds of one tenant."""

    def txn(self, gateway: str, gateway_txn_id: str) -> Row[Any] | None:
        """The transaction recorded under this gateway id, as a read-only row."""
        return run(self.session, _TXN, {"tenant_id": self.tenant_id, "gateway": gateway,
                                        "gateway_txn_id": gateway_txn_id}).one_or_none()

    @staticmethod
    def txns_by_key(pipeline: Pipeline, keys: list[tuple[int, str, str]]
                    ) -> Callable[[], set[tuple[int, str, str]]]:
        """Which of these (tenant, gateway, gateway txn id) are already recorded: queued in
        `pipeline`, the call answers once it is flushed."""
        queued = [((tenant_id, gateway), _RECORDED.queue(pipeline, {
                      "tenant_id": tenant_id, "gateway": gateway, "gateway_txn_ids": txn_ids}))
                  for (tenant_id, gateway), txn_ids in grouped(((t, g), x) for t, g, x in keys)]
        return lambda: {(tenant_id, gateway, row[0])
                        for (tenant_id, gateway), q in queued for row in q.rows}

    @staticmethod
    def add_txns(session: Session, rows: list[dict[str, Any]],
                 pipeline: Pipeline | None = None) -> None:
        """Insert transactions (each row names its tenant) in one statement, now or in
        `pipeline`.

        UNIQUE (tenant, gateway, txn id) refuses a transaction recorded before.
        """
        if pipeline is not None:
            pipeline.write(_ADD_TXN, rows, expect=len(rows))
        else:
            run(session, _ADD_TXN, rows)


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
