"""Storage of tickets (with their entitlements), their redemptions and the keys that sign them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, bindparam, case, insert, select, update
from sqlalchemy.orm import Session

from ticketing.kit.sql import ListLookup, Pipeline, grouped, insert_ignoring_conflict, run
from ticketing.kit.tenancy import TenantRepository
from ticketing.models import (
    Order,
    OrderItem,
    ProductEntitlement,
    Redemption,
    Ticket,
    TicketSigningKey,
    User,
)


_TICKETS, _PRODUCT_ENTS = Ticket.__table__, ProductEntitlement.__table__
_REDEMPTIONS, _USERS = Redemption.__table__, User.__table__
_TENANT = bindparam("tenant_id")
_ADD_TICKETS = insert(_TICKETS)
# The entitlements of a tenant's products, by product pk; each product's in its order (id).
_ENTITLEMENTS_OF = ListLookup(
    select(_PRODUCT_ENTS.c.id, _PRODUCT_ENTS.c.product_pk, _PRODUCT_ENTS.c.code,
           _PRODUCT_ENTS.c.name, _PRODUCT_ENTS.c.uses).where(_PRODUCT_ENTS.c.tenant_id == _TENANT),
    _PRODUCT_ENTS.c.product_pk, "product_pks", order_by=_PRODUCT_ENTS.c.id)
# The entitlements of the products of a tenant's orders, by order id: what a batch of
# payments copies onto its tickets, read in the round trip that reads the orders' items.
_ITEMS = OrderItem.__table__
_ENTITLEMENTS_OF_ORDERS = ListLookup(
    select(_PRODUCT_ENTS.c.id, _PRODUCT_ENTS.c.product_pk, _PRODUCT_ENTS.c.code,
           _PRODUCT_ENTS.c.name, _PRODUCT_ENTS.c.uses)
    .select_from(_ITEMS.join(_PRODUCT_ENTS, (_PRODUCT_ENTS.c.tenant_id == _ITEMS.c.tenant_id)
                             & (_PRODUCT_ENTS.c.product_pk == _ITEMS.c.product_pk)))
    .where(_ITEMS.c.tenant_id == _TENANT),
    _ITEMS.c.order_id, "order_ids")
# One use taken: the rewritten list, one use fewer in total, REDEEMED with the last one;
# only if the ticket is as it was read (UPDATE may not bind a column's name: w_, v_).
_TAKE_ONE_USE = (update(_TICKETS)
                 .where(_TICKETS.c.tenant_id == bindparam("w_tenant"),
                        _TICKETS.c.id == bindparam("w_ticket"),
                        _TICKETS.c.uses_left == bindparam("w_uses_left"),
                        _TICKETS.c.status == bindparam("w_status"))
                 .values(entitlements=bindparam("v_entitlements",
                                                type_=_TICKETS.c.entitlements.type),
                         uses_left=_TICKETS.c.uses_left - 1,
                         status=case((_TICKETS.c.uses_left == 1, "REDEEMED"),
                                     else_=_TICKETS.c.status)))
# What showing tickets reads (GET /my/tickets, an order's tickets): rows, built once.
_FOR_USER = (select(*_TICKETS.c)
             .where(_TICKETS.c.tenant_id == _TENANT, _TICKETS.c.user_id == bindparam("user_id"))
             .order_by(_TICKETS.c.id.desc()).limit(bindparam("limit")))
_FOR_ORDER = (select(*_TICKETS.c)
              .where(_TICKETS.c.tenant_id == _TENANT, _TICKETS.c.order_id == bindparam("order_id"))
              .order_by(_TICKETS.c.id))
_ACCEPTED_OF = (select(*_REDEMPTIONS.c, _USERS.c.name.label("staff_name"))
                .join(_USERS, _USERS.c.id == _REDEMPTIONS.c.staff_user_id)
                .where(_REDEMPTIONS.c.tenant_id == _TENANT, _REDEMPTIONS.c.accepted,
                       _REDEMPTIONS.c.ticket_id.in_(bindparam("ticket_ids", expanding=True)))
                .order_by(_REDEMPTIONS.c.id))


class TicketRepository(TenantRepository):
    """Tickets of one tenant."""

    @staticmethod
    def insert_tickets(session: Session, rows: list[dict[str, Any]],
                       pipeline: Pipeline | None = None) -> None:
        """Insert tickets (each row names its tenant): one executemany, now or in `pipeline`."""
        if pipeline is not None:
            pipeline.write(_ADD_TICKETS, rows, expect=len(rows))
        else:
            run(session, _ADD_TICKETS, rows)

    @staticmethod
    def product_entitlements(session: Session, products: list[tuple[int, int]]
                             ) -> dict[tuple[int, int], list[Row[Any]]]:
        """The entitlements of these (tenant, product pk)s as they are now, in product order:
        one statement per tenant."""
        found: dict[tuple[int, int], list[Row[Any]]] = {key: [] for key in products}
        for tenant_id, product_pks in grouped(products):
            params = {"tenant_id": tenant_id, "product_pks": product_pks}
            for row in _ENTITLEMENTS_OF.run(session, params):
                found[(tenant_id, row.product_pk)].append(row)
        return found

    @staticmethod
    def entitlements_of_orders(pipeline: Pipeline, keys: list[tuple[int, int]]
                               ) -> Callable[[], dict[tuple[int, int], list[Any]]]:
        """The entitlements of the products these (tenant, order id)s bought, queued in
        `pipeline`; once it is flushed, the call returns them by (tenant, product pk), each
        product's in id order, as `product_entitlements` does."""
        queued = [(tenant_id, _ENTITLEMENTS_OF_ORDERS.queue(
                      pipeline, {"tenant_id": tenant_id, "order_ids": order_ids}))
                  for tenant_id, order_ids in grouped(keys)]

        def by_product() -> dict[tuple[int, int], list[Any]]:
            found: dict[tuple[int, int], dict[int, Any]] = {}
            for tenant_id, q in queued:  # a product bought in several orders: once
                for row in q.rows:
                    found.setdefault((tenant_id, row.product_pk), {})[row.id] = row
            return {key: [rows[i] for i in sorted(rows)] for key, rows in found.items()}
        return by_product

    def by_code(self, code: str, *, lock: bool = False) -> Ticket | None:
        stmt = self.select(Ticket).where(Ticket.ticket_code == code)
        if lock:
            stmt = stmt.with_for_update()
        return self.session.execute(stmt).scalar_one_or_none()

    def for_user(self, user_id: int, limit: int) -> list[Row[Any]]:
        """The user's tickets, newest first (read-only rows)."""
        params = {"tenant_id": self.tenant_id, "user_id": user_id, "limit": limit}
        return list(run(self.session, _FOR_USER, params))

    def for_order(self, order_id: int) -> list[Row[Any]]:
        """The order's tickets (read-only rows)."""
        return list(run(self.session, _FOR_ORDER, {"tenant_id": self.tenant_id,
                                                   "order_id": order_id}))

    def void_order(self, order_id: int, when: Any) -> int:
        stmt = (
            self.update(Ticket)
            .where(Ticket.order_id == order_id, Ticket.status != "VOID")
            .values(status="VOID", voided_at=when)
        )
        return self.session.execute(stmt).rowcount

    def payment_of(self, order_id: int) -> Any | None:
        """(gateway, transaction_id, paid_at) of the order a ticket was bought in."""
        stmt = self.select(Order, Order.gateway, Order.transaction_id, Order.paid_at).where(
            Order.id == order_id)
        return self.session.execute(stmt).one_or_none()

    def take_one_use(self, ticket: Ticket, entitlements: list[dict[str, Any]]) -> bool:
        """Store `entitlements` (one use fewer than the ticket's) if nobody changed it since
        it was read; the ticket becomes REDEEMED with its last use. False if it changed."""
        params = {"w_tenant": self.tenant_id, "w_ticket": ticket.id,
                  "w_uses_left": ticket.uses_left, "w_status": ticket.status,
                  "v_entitlements": entitlements}
        return run(self.session, _TAKE_ONE_USE, params).rowcount == 1


class RedemptionRepository(TenantRepository):
    """Scans of one tenant's tickets, accepted and refused."""

    def add(self, **values: Any) -> int:
        """Record one scan; its id."""
        stmt = insert(Redemption).values(tenant_id=self.tenant_id, **values)
        return self.session.execute(stmt.returning(Redemption.id)).scalar_one()

    def accepted_with_nonce(self, ticket_id: int, nonce: str) -> Redemption | None:
        """The accepted scan of this ticket that carried `nonce`, if any."""
        stmt = self.select(Redemption).where(
            Redemption.ticket_id == ticket_id, Redemption.nonce == nonce, Redemption.accepted)
        return self.session.execute(stmt).scalar_one_or_none()

    def _rows(self) -> Select[Any]:
        """Redemptions with their staff member's name and their ticket's order and product."""
        return (
            self.select(Redemption, Redemption, User.name, Ticket.order_id, Ticket.product_id)
            .join(User, User.id == Redemption.staff_user_id)
            .outerjoin(Ticket, Ticket.id == Redemption.ticket_id)
        )

    def by_id(self, redemption_id: int) -> Row[Any]:
        """One scan, with its staff name, order and product."""
        return self.session.execute(self._rows().where(Redemption.id == redemption_id)).one()

    def accepted_for_tickets(self, ticket_ids: list[int]) -> dict[int, list[tuple[Any, str]]]:
        """Accepted redemptions of each ticket, oldest first, as (redemption, staff name)."""
        if not ticket_ids:
            return {}
        grouped: dict[int, list[tuple[Any, str]]] = {i: [] for i in ticket_ids}
        params = {"tenant_id": self.tenant_id, "ticket_ids": ticket_ids}
        for row in run(self.session, _ACCEPTED_OF, params):
            grouped[row.ticket_id].append((row, row.staff_name))
        return grouped

    def latest(self, *, since: datetime | None, until: datetime | None, location: str | None,
               product_id: int | None, accepted: bool | None, limit: int) -> list[Row[Any]]:
        """Scans newest first, narrowed by time window, gate, product and result."""
        stmt = self._rows().order_by(Redemption.redeemed_at.desc(), Redemption.id.desc())
        if since is not None:
            stmt = stmt.where(Redemption.redeemed_at >= since)
        if until is not None:
            stmt = stmt.where(Redemption.redeemed_at < until)
        if location is not None:
            stmt = stmt.where(Redemption.location == location)
        if product_id is not None:
            stmt = stmt.where(Ticket.product_id == product_id)
        if accepted is not None:
            stmt = stmt.where(Redemption.accepted == accepted)
        return list(self.session.execute(stmt.limit(limit)))


class SigningKeyRepository(TenantRepository):
    """A tenant's ticket signing key."""

    def find(self) -> TicketSigningKey | None:
        """The tenant's key, if made yet."""
        return self.session.execute(self.select(TicketSigningKey)).scalar_one_or_none()

    def add_unless_present(self, values: dict[str, Any]) -> None:
        """Insert the key; a concurrent first insert wins and this one does nothing."""
        insert_ignoring_conflict(self.session, TicketSigningKey.__table__,
                                 {"tenant_id": self.tenant_id, **values}, TicketSigningKey.id)
