"""Operator endpoint listing a tenant's scans at the gate, accepted and refused."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import AwareDatetime

from ticketing.api.deps import SLUG, DbDep, Operator
from ticketing.tenant.schemas import NO_NUL
from ticketing.tenant.service import get_tenant
from ticketing.ticket import redemption
from ticketing.ticket.schemas import ScanOut

router = APIRouter(prefix="/admin/tenants", tags=["operator"], dependencies=[Operator])


@router.get("/{slug}/redemptions", response_model=dict[str, list[ScanOut]])
def list_redemptions(
    slug: Annotated[str, Path(pattern=SLUG.pattern)],
    db: DbDep,
    since: Annotated[AwareDatetime | None, Query(description="RFC 3339; scans at or after")] = None,
    until: Annotated[AwareDatetime | None, Query(description="RFC 3339; scans before")] = None,
    location: Annotated[str | None, Query(min_length=1, max_length=100, pattern=NO_NUL)] = None,
    product_id: Annotated[int | None, Query(ge=1, le=2**53)] = None,
    accepted: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Every scan of the tenant's tickets, newest first: accepted uses and refusals."""
    with db.transaction(readonly=True) as session:
        tenant = get_tenant(session, slug)
        return {"redemptions": redemption.list_scans(
            session, tenant.id, since=since, until=until, location=location,
            product_id=product_id, accepted=accepted, limit=limit)}
