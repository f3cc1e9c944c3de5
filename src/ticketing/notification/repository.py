"""Storage of every notification received."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from ticketing.kit.sql import Pipeline, Queued, run
from ticketing.kit.tenancy import TenantRepository
from ticketing.models import Notification

_ADD = insert(Notification.__table__).returning(Notification.__table__.c.id,
                                                sort_by_parameter_order=True)


class NotificationRepository(TenantRepository):
    """Notifications of one tenant."""

    @staticmethod
    def add_many(session: Session, rows: list[dict[str, Any]]) -> list[int]:
        """Insert notifications (each row names its tenant); their ids, in order."""
        if len(rows) == 1:
            return [run(session, _ADD, rows[0]).scalar_one()]
        return [row[0] for row in run(session, _ADD, rows)]

    @staticmethod
    def queue_many(pipeline: Pipeline, rows: list[dict[str, Any]]) -> Queued:
        """`add_many` queued in `pipeline`: the ids are its rows, in order, once flushed."""
        return pipeline.write(_ADD, rows, expect=len(rows))

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
