"""Operator endpoint listing the notifications a tenant received."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query

from ticketing.api.deps import DbDep, Operator
from ticketing.notification import service
from ticketing.tenant.service import get_tenant

router = APIRouter(prefix="/admin/tenants", tags=["operator"], dependencies=[Operator])
Outcome = Literal[service.OUTCOMES]  # type: ignore[valid-type]


@router.get("/{slug}/notifications")
def list_notifications(
    slug: Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")],
    db: DbDep,
    outcome: Outcome | None = None,
    order_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> dict[str, Any]:
    """Every notification received, newest first (page with `before_id`)."""
    with db.transaction(readonly=True) as session:
        tenant = get_tenant(session, slug)
        return {"notifications": service.list_notifications(
            session, tenant.id, outcome=outcome, order_id=order_id, limit=limit,
            before_id=before_id)}
