"""HTTP entry points for tickets."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from ticketing.api.deps import DbDep, TenantDep, TokenDep
from ticketing.order.schemas import TicketOut
from ticketing.tenant.service import authenticate
from ticketing.ticket import service

router = APIRouter(tags=["tickets"])
Code = Annotated[str, Path(min_length=1, max_length=64)]


@router.get("/my/tickets", response_model=dict[str, list[TicketOut]])
def my_tickets(db: DbDep, tenant: TenantDep, token: TokenDep) -> dict[str, Any]:
    """The caller's tickets, newest first."""
    with db.transaction(readonly=True) as session:
        caller = authenticate(session, tenant, token, "customer")
        return {"tickets": service.my_tickets(session, caller)}


@router.get("/tickets/{ticket_code}", response_model=TicketOut)
def get_ticket(ticket_code: Code, db: DbDep, tenant: TenantDep, token: TokenDep) -> dict[str, Any]:
    """One ticket, for its owner or the tenant's staff."""
    with db.transaction(readonly=True) as session:
        caller = authenticate(session, tenant, token, None)
        return service.get_ticket(session, caller, ticket_code)
