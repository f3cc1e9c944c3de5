"""HTTP entry points for tickets: showing them, scanning them at the gate, their QR codes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Response

from ticketing.api.deps import SLUG, DbDep, TenantDep, TokenDep
from ticketing.order.schemas import TicketOut
from ticketing.tenant.service import authenticate, get_tenant
from ticketing.ticket import qr, redemption, service, signing
from ticketing.ticket.schemas import RedeemIn, RedeemOut, TicketDetailOut, TicketKeyOut

router = APIRouter(tags=["tickets"])
Code = Annotated[str, Path(min_length=1, max_length=64)]
Slug = Annotated[str, Path(pattern=SLUG.pattern)]


@router.get("/my/tickets", response_model=dict[str, list[TicketOut]])
def my_tickets(db: DbDep, tenant: TenantDep, token: TokenDep) -> dict[str, Any]:
    """The caller's tickets, newest first."""
    with db.transaction(readonly=True) as session:
        caller = authenticate(session, tenant, token, "customer")
        return {"tickets": service.my_tickets(session, caller)}


@router.get("/tickets/{ticket_code}", response_model=TicketDetailOut)
def get_ticket(ticket_code: Code, db: DbDep, tenant: TenantDep, token: TokenDep) -> dict[str, Any]:
    """One ticket, its redemptions and its payment, for its owner or the tenant's staff."""
    with db.transaction(readonly=True) as session:
        caller = authenticate(session, tenant, token, None)
        return service.get_ticket(session, caller, ticket_code)


@router.post("/tickets/{ticket_code}/redeem", response_model=RedeemOut)
def redeem(ticket_code: Code, body: RedeemIn, db: DbDep, tenant: TenantDep,
           token: TokenDep) -> dict[str, Any]:
    """Use one entitlement of the ticket at a gate (staff only).

    409 `ticket_void` or `entitlement_used_up`, 404 `ticket_not_found` or
    `entitlement_not_found`, 409 `nonce_reused` for a nonce already used for another
    scan. Every refusal is recorded for the operator.
    """
    scan = redemption.Scan(ticket_code=ticket_code, entitlement=body.entitlement,
                           location=body.location, nonce=body.nonce)
    return redemption.scan_at_gate(db, tenant, token, scan)


@router.get(
    "/tickets/{ticket_code}/qr",
    response_class=Response,
    responses={200: {"content": {t: {} for t in qr.MEDIA_TYPES.values()},
                     "description": "the signed ticket code as a QR image (or as text)"}},
)
def ticket_qr(
    ticket_code: Code, db: DbDep, tenant: TenantDep, token: TokenDep,
    format: Annotated[Literal["png", "svg", "txt"] | None, Query()] = None,  # noqa: A002
    accept: Annotated[str | None, Header()] = None,
) -> Response:
    """The ticket's signed code as a QR image: PNG, or SVG (`?format=svg` or Accept).

    `?format=txt` gives the payload itself, for apps that draw their own QR code.
    """
    with db.transaction(readonly=True) as session:
        caller = authenticate(session, tenant, token, None)
        ticket = service.visible_ticket(session, caller, ticket_code)
    key = signing.tenant_key(db, caller.tenant_id)
    payload = signing.sign_code(key.private, caller.tenant.slug, ticket.ticket_code)
    kind = qr.choose_format(format, accept)
    return Response(qr.render(payload, kind), media_type=qr.MEDIA_TYPES[kind],
                    headers={"Cache-Control": "no-store"})


@router.get("/tenants/{slug}/ticket-key", response_model=TicketKeyOut)
def ticket_key(slug: Slug, db: DbDep) -> dict[str, Any]:
    """The tenant's public key for checking signed ticket codes offline (no auth)."""
    with db.transaction(readonly=True) as session:
        tenant = get_tenant(session, slug)
    key = signing.tenant_key(db, tenant.id)
    return {"tenant": tenant.slug, "algorithm": signing.ALGORITHM,
            "public_key": signing.b64url(key.public),
            "public_key_pem": signing.public_key_pem(key.public),
            "payload_format": signing.PAYLOAD_FORMAT, "signed_message": signing.SIGNED_MESSAGE,
            "signature_encoding": signing.SIGNATURE_ENCODING}
