"""Storage of every notification received."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert

from ticketing.kit.sql import run
from ticketing.kit.tenancy import TenantRepository
from ticketing.models import Notification

_ADD = insert(Notification.__table__).returning(Notification.__table__.c.id)


class NotificationRepository(TenantRepository):
    """Notifications of one tenant."""

    def add(self, **values: Any) -> int:
        return run(self.session, _ADD, {"tenant_id": self.tenant_id, **values}).scalar_one()

    def latest(self, *, outcome: str | None, order_id: int | None, limit: int,
               before_id: int | None) -> list[Notification]:
        stmt = self.select(Notification).order_by(Notification.id.desc()).limit(limit)
        if outcome:
            stmt = stmt.where(Notification.outcome == outcome)
        if order_id is not None:
            stmt = stmt.where(Notification.order_id == order_id)
        if before_id is not None:
            stmt = stmt.where(Notification.id < before_id)
        return list(self.session.execute(stmt).scalars())
