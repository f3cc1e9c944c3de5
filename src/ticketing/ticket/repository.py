"""Storage of tickets and their entitlements."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert

from ticketing.kit.tenancy import TenantRepository
from ticketing.models import Ticket, TicketEntitlement


class TicketRepository(TenantRepository):
    """Tickets of one tenant."""

    def insert_tickets(self, rows: list[dict[str, Any]]) -> list[int]:
        """Insert tickets in one statement; their ids, in the order given."""
        stmt = insert(Ticket).returning(Ticket.id, sort_by_parameter_order=True)
        return [row[0] for row in self.session.execute(stmt, rows)]

    def insert_entitlements(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.session.execute(insert(TicketEntitlement), rows)

    def by_code(self, code: str, *, lock: bool = False) -> Ticket | None:
        stmt = self.select(Ticket).where(Ticket.ticket_code == code)
        if lock:
            stmt = stmt.with_for_update()
        return self.session.execute(stmt).scalar_one_or_none()

    def for_user(self, user_id: int, limit: int) -> list[Ticket]:
        stmt = (
            self.select(Ticket).where(Ticket.user_id == user_id)
            .order_by(Ticket.id.desc()).limit(limit)
        )
        return list(self.session.execute(stmt).scalars())

    def for_order(self, order_id: int) -> list[Ticket]:
        stmt = self.select(Ticket).where(Ticket.order_id == order_id).order_by(Ticket.id)
        return list(self.session.execute(stmt).scalars())

    def entitlements(self, ticket_ids: list[int]) -> dict[int, list[TicketEntitlement]]:
        if not ticket_ids:
            return {}
        stmt = (
            self.select(TicketEntitlement)
            .where(TicketEntitlement.ticket_id.in_(ticket_ids))
            .order_by(TicketEntitlement.id)
        )
        grouped: dict[int, list[TicketEntitlement]] = {i: [] for i in ticket_ids}
        for ent in self.session.execute(stmt).scalars():
            grouped[ent.ticket_id].append(ent)
        return grouped

    def void_order(self, order_id: int, when: Any) -> int:
        stmt = (
            self.update(Ticket)
            .where(Ticket.order_id == order_id, Ticket.status != "VOID")
            .values(status="VOID", voided_at=when)
        )
        return self.session.execute(stmt).rowcount
