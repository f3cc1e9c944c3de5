"""Redeeming tickets at the gate: one use per scan, every scan on record.

A scan locks its ticket row (SELECT … FOR UPDATE; SQLite's BEGIN IMMEDIATE does the
same for the whole database), re-checks state, and takes one use with a compare-and-set:
the ticket's entitlements (a JSON list on its row) are rewritten with one use fewer, in
an UPDATE that also matches the uses left in total and the status it read.
A refused scan is recorded in the same transaction, which changed nothing else and is
committed before the refusal is raised, so the operator sees it even though the
scanner got a 4xx.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from prometheus_client import Counter
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ticketing.db import Database
from ticketing.kit.clock import rfc3339, utcnow
from ticketing.kit.errors import Conflict, NotFound, TicketingError
from ticketing.models import Ticket
from ticketing.tenant.service import Caller, authenticate
from ticketing.ticket.codes import looks_like_ticket_code
from ticketing.ticket.repository import RedemptionRepository, TicketRepository
from ticketing.ticket.service import redemption_view, staff_view

log = structlog.get_logger(component="gate")
SCANS = Counter("ticketing_ticket_scans_total",
                "Ticket scans at the gate, by result (accepted, replayed or the refusal code).",
                ["result"])


@dataclass(frozen=True)
class Scan:
    """What the gate sent: which ticket, which entitlement, where, and an optional nonce."""

    ticket_code: str
    entitlement: str
    location: str
    nonce: str | None = None


@dataclass(frozen=True)
class ScanResult:
    """Either the answer for an accepted (or replayed) scan, or the refusal to raise."""

    answer: dict[str, Any] | None = None
    refusal: TicketingError | None = None


def redeem(session: Session, caller: Caller, scan: Scan, when: datetime) -> ScanResult:
    """Use one of the ticket's entitlement, or record why not; never raises a refusal."""
    tickets = TicketRepository(session, caller.tenant_id)
    ticket = tickets.by_code(scan.ticket_code, lock=True) if looks_like_ticket_code(
        scan.ticket_code) else None
    if ticket is None:
        return _refuse(session, caller, scan, None, when,
                       NotFound("Ticket not found", code="ticket_not_found"))
    if scan.nonce:
        earlier = RedemptionRepository(session, caller.tenant_id).accepted_with_nonce(
            ticket.id, scan.nonce)
        if earlier is not None:
            if (earlier.entitlement, earlier.location) != (scan.entitlement, scan.location):
                return _refuse(session, caller, scan, ticket, when, Conflict(
                    "This nonce was used for another scan", code="nonce_reused"))
            return ScanResult(answer=_answer(session, caller, ticket.ticket_code, earlier.id,
                                             ticket.status, replayed=True))
    if ticket.status == "VOID":
        return _refuse(session, caller, scan, ticket, when,
                       Conflict("Ticket is void (refunded)", code="ticket_void"))
    ents = ticket.entitlements
    ent = next((e for e in ents if e["code"] == scan.entitlement), None)
    if ent is None:
        return _refuse(session, caller, scan, ticket, when, NotFound(
            "This ticket has no such entitlement", code="entitlement_not_found"))
    left = ent["uses_left"] - 1
    taken = [{**e, "uses_left": left} if e is ent else e for e in ents]
    if left < 0 or not tickets.take_one_use(ticket, taken):
        return _refuse(session, caller, scan, ticket, when, Conflict(
            "Entitlement already used up", code="entitlement_used_up"))
    status = "REDEEMED" if ticket.uses_left == 1 else ticket.status
    redemption_id = RedemptionRepository(session, caller.tenant_id).add(
        ticket_id=ticket.id, ticket_code=ticket.ticket_code, entitlement=ent["code"],
        location=scan.location, staff_user_id=caller.user.id, accepted=True, reason=None,
        uses_left=left, nonce=scan.nonce, redeemed_at=when)
    log.info("ticket.redeemed", tenant_id=caller.tenant_id, order_id=ticket.order_id,
             ticket_id=ticket.id, entitlement=ent["code"], location=scan.location,
             staff_user_id=caller.user.id, uses_left=left, ticket_status=status)
    return ScanResult(answer=_answer(session, caller, ticket.ticket_code, redemption_id, status,
                                     replayed=False))


def _answer(session: Session, caller: Caller, code: str, redemption_id: int, status: str,
            *, replayed: bool) -> dict[str, Any]:
    row = RedemptionRepository(session, caller.tenant_id).by_id(redemption_id)
    return {"ticket_code": code, "redemption": redemption_view(row),
            "uses_left": row[0].uses_left, "ticket_status": status, "replayed": replayed}


def _refuse(session: Session, caller: Caller, scan: Scan, ticket: Ticket | None,
            when: datetime, error: TicketingError) -> ScanResult:
    """Keep the refused scan; the nonce is kept too (only accepted scans are unique on it)."""
    RedemptionRepository(session, caller.tenant_id).add(
        ticket_id=ticket.id if ticket else None, ticket_code=scan.ticket_code[:64],
        entitlement=scan.entitlement, location=scan.location,
        staff_user_id=caller.user.id, accepted=False, reason=error.code, uses_left=None,
        nonce=scan.nonce, redeemed_at=when)
    log.info("ticket.scan_refused", tenant_id=caller.tenant_id,
             order_id=ticket.order_id if ticket else None, ticket_id=ticket.id if ticket else None,
             entitlement=scan.entitlement, location=scan.location, staff_user_id=caller.user.id,
             reason=error.code)
    return ScanResult(refusal=error)


def scan_at_gate(db: Database, slug: str, token: str | None, scan: Scan) -> dict[str, Any]:
    """The redeem entry point: one transaction, refusals committed before they are raised.

    The row lock makes a second scan with the same nonce wait and then replay; should two
    still collide on the unique nonce index, the loser rolls back whole and runs once
    more, and then finds the winner's redemption.
    """
    for attempt in (1, 2):
        try:
            with db.transaction() as session:
                caller = authenticate(session, slug, token, "staff")
                result = redeem(session, caller, scan, utcnow())
            break
        except IntegrityError:
            if attempt == 2:
                raise
            log.warning("ticket.redeem_raced", ticket_code=scan.ticket_code, nonce=scan.nonce)
    if result.refusal is not None:
        SCANS.labels(result.refusal.code).inc()
        raise result.refusal
    assert result.answer is not None
    SCANS.labels("replayed" if result.answer["replayed"] else "accepted").inc()
    return result.answer


def scan_view(row: Any) -> dict[str, Any]:
    """A scan as the operator sees it (row: Redemption, staff name, order id, product id)."""
    r, staff_name, order_id, product_id = row
    return {
        "id": r.id, "ticket_code": r.ticket_code, "order_id": order_id, "product_id": product_id,
        "entitlement": r.entitlement, "location": r.location,
        "staff": staff_view(r.staff_user_id, staff_name), "redeemed_at": rfc3339(r.redeemed_at),
        "accepted": r.accepted, "reason": r.reason, "uses_left": r.uses_left, "nonce": r.nonce,
    }


def list_scans(session: Session, tenant_id: int, *, since: datetime | None = None,
               until: datetime | None = None, location: str | None = None,
               product_id: int | None = None, accepted: bool | None = None,
               limit: int = 100) -> list[dict[str, Any]]:
    """A tenant's scans, newest first, by time window, gate, product and result."""
    rows = RedemptionRepository(session, tenant_id).latest(
        since=since, until=until, location=location, product_id=product_id,
        accepted=accepted, limit=limit)
    return [scan_view(r) for r in rows]
