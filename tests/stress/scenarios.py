"""Scripted payment histories for many orders at once, and what the books must say after.

Each `Script` is one order's history: steps run one after another, and the requests of
one step are sent at once (duplicates race each other). The outcome of every script is
fixed by the rules whatever the interleaving with other orders, so after a run the
final order states, stock, tickets and stored notifications can be checked exactly.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import func, select

from tests.factories import OPERATOR
from tests.stress.gateway import Delivery, Gateway
from ticketing.db import Database
from ticketing.models import Notification, Order, PaymentTransaction, Product, Tenant, Ticket

STOCK = 1_000_000
PRICES = {1: 990, 2: 250}
SHORT_TTL_KINDS = ("late", "late_fail", "abandoned")
# kind: (final status, needs_refund, weight)
KINDS = {
    "pay": ("PAID", False, 5), "conflict": ("PAID", False, 2), "fail_then_pay": ("PAID", False, 2),
    "fail_only": ("PENDING", False, 1), "double_pay": ("REFUNDED", False, 1),
    "pay_refund": ("REFUNDED", False, 1), "late": ("PAID", False, 1),
    "late_fail": ("CLOSED", False, 1), "abandoned": ("CLOSED", False, 1),
}


@dataclass
class Script:
    kind: str
    tenant: str
    items: dict[int, int]
    dups: int
    order: dict[str, Any] = field(default_factory=dict)
    steps: list[list[tuple[str, Any]]] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)  # notifications, as answered first
    deliveries: list[Delivery] = field(default_factory=list)

    @property
    def units(self) -> int:
        return sum(self.items.values())


def setup_tenants(base_url: str, names: list[str]) -> dict[str, dict[str, str]]:
    """Tenants with two plentiful products and a customer; their customer headers by slug."""
    headers = {}
    with httpx.Client(base_url=base_url, headers=OPERATOR, timeout=30) as c:
        for slug in names:
            assert c.post("/admin/tenants", json={"slug": slug, "name": slug}).status_code == 200
            for pid, price in PRICES.items():
                assert c.post(f"/admin/tenants/{slug}/products", json={
                    "product_id": pid, "name": f"Pass {pid}", "price": price, "stock": STOCK,
                    "entitlements": [{"code": "ride", "name": "Ride", "uses": 2}]}).status_code == 200
            token = f"customer-{slug}"
            assert c.post(f"/admin/tenants/{slug}/users", json={
                "name": "Storm Customer", "role": "customer", "token": token}).status_code == 200
            headers[slug] = {"X-Tenant-ID": slug, "Authorization": f"Bearer {token}"}
    return headers


def make_scripts(rng: random.Random, n: int, tenants: list[str], *, kinds: dict | None = None,
                 max_dups: int = 8) -> list[Script]:
    """`n` random order histories across `tenants`."""
    kinds = kinds or KINDS
    names = list(kinds)
    weights = [kinds[k][2] for k in names]
    scripts = []
    for _ in range(n):
        items = {p: rng.randint(1, 3) for p in rng.sample(sorted(PRICES), rng.randint(1, 2))}
        scripts.append(Script(rng.choices(names, weights)[0], rng.choice(tenants), items,
                              rng.randint(1, max_dups)))
    return scripts


def _note(order: dict[str, Any], txn: str, status: str = "SUCCESS", amount: int | None = None):
    return ("notify", {"order_id": order["order_id"], "gateway_txn_id": txn, "status": status,
                       "amount": order["total_amount"] if amount is None else amount})


def plan(script: Script) -> None:
    """Fill in the steps and the outcomes the rules give, once the order exists."""
    o, d, base = script.order, script.dups, f"{script.tenant}-{script.order['order_id']}"
    pay, fail, extra = _note(o, base + "-S"), _note(o, base + "-F", "FAILED"), _note(o, base + "-X")
    k, out = script.kind, script.outcomes
    if k in ("pay", "late"):
        script.steps = [[pay] * d]
        out.update(processed=1, replayed=d - 1)
    elif k == "conflict":
        wrong_amount = _note(o, base + "-S", amount=o["total_amount"] + 1)
        wrong_status = _note(o, base + "-S", "FAILED")
        script.steps = [[pay] * d + [wrong_amount], [wrong_status]]
        out.update(processed=1, replayed=d - 1, conflict=2)
    elif k in ("fail_then_pay", "fail_only"):
        script.steps = [[fail] * d] + ([[pay] * d] if k == "fail_then_pay" else [])
        out.update(failed=1, replayed=d - 1)
        if k == "fail_then_pay":
            out.update(processed=1, replayed=d - 1)
    elif k == "double_pay":  # money twice: the refunds return the paid one, then the extra
        script.steps = [[pay] * d, [extra] * d, [("refund", 200)], [("refund", 200)]]
        out.update(processed=1, needs_refund=1, replayed=2 * d - 2)
    elif k == "pay_refund":
        script.steps = [[pay] * d, [("refund", 200)], [pay] * d]
        out.update(processed=1, replayed=2 * d - 1)
    elif k == "late_fail":
        script.steps = [[fail] * d]
        out.update(ignored=1, replayed=d - 1)


async def create_order(gw: Gateway, script: Script, headers: dict[str, str]) -> None:
    key = f"stress-{id(script)}"
    r = await gw.deliver("POST", "/orders", headers={**headers, "Idempotency-Key": key}, json={
        "items": [{"product_id": p, "quantity": q} for p, q in script.items.items()]})
    assert r.status == 200, r.body
    script.order = r.body
    plan(script)


async def _wait_closed(gw: Gateway, script: Script, timeout: float = 60) -> None:
    """Until the expiry job has closed the order (sleeping through its TTL first)."""
    expires = datetime.fromisoformat(script.order["expires_at"])
    await asyncio.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.5)
    path = f"/admin/tenants/{script.tenant}/orders/{script.order['order_id']}"
    for _ in range(int(timeout / 0.5)):
        r = await gw.deliver("GET", path, headers=OPERATOR)
        if r.body["status"] == "CLOSED":
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"order {script.order['order_id']} never expired")


async def play(gw: Gateway, script: Script) -> None:
    """Run a script's steps in order, each step's requests at once."""
    if script.kind in SHORT_TTL_KINDS:
        await _wait_closed(gw, script)
    for step in script.steps:
        sends = [gw.notify(payload, script.tenant) if what == "notify"
                 else gw.refund(script.order["order_id"], script.tenant) for what, payload in step]
        script.deliveries += await asyncio.gather(*sends)


def sent_notifications(scripts: list[Script]) -> int:
    return sum(1 for s in scripts for step in s.steps for what, _ in step if what == "notify")


def expected_outcomes(scripts: list[Script]) -> Counter[str]:
    total: Counter[str] = Counter()
    for s in scripts:
        total.update(s.outcomes)
    return +total


def stored_outcomes(db: Database, tenants: list[str]) -> Counter[str]:
    with db.transaction(readonly=True) as session:
        rows = session.execute(
            select(Notification.outcome, func.count()).join(Tenant, Tenant.id == Notification.tenant_id)
            .where(Tenant.slug.in_(tenants)).group_by(Notification.outcome)).all()
    return Counter({outcome: n for outcome, n in rows})


def check_final_state(db: Database, scripts: list[Script], tenants: list[str]) -> None:
    """Every order where its script says, with its tickets, and the stock that follows."""
    ids = [s.order["order_id"] for s in scripts]
    with db.transaction(readonly=True) as session:
        orders = {o.id: o for o in session.scalars(select(Order).where(Order.id.in_(ids)))}
        live = dict(session.execute(select(Ticket.order_id, func.count())
                                    .where(Ticket.order_id.in_(ids), Ticket.status != "VOID")
                                    .group_by(Ticket.order_id)).all())
        issued = dict(session.execute(select(Ticket.order_id, func.count())
                                      .where(Ticket.order_id.in_(ids)).group_by(Ticket.order_id)).all())
        products = session.execute(select(Tenant.slug, Product.product_id, Product.stock,
                                          Product.reserved, Product.sold)
                                   .join(Tenant, Tenant.id == Product.tenant_id)
                                   .where(Tenant.slug.in_(tenants))).all()
    sold: Counter[tuple[str, int]] = Counter()
    held: Counter[tuple[str, int]] = Counter()
    for s in scripts:
        o = orders[s.order["order_id"]]
        status, needs_refund, _ = KINDS[s.kind]
        assert (o.status, o.needs_refund) == (status, needs_refund), (s.kind, o.id, o.status)
        assert live.get(o.id, 0) == (s.units if status == "PAID" else 0), (s.kind, o.id)
        assert issued.get(o.id, 0) == (s.units if status in ("PAID", "REFUNDED") else 0), o.id
        for p, q in s.items.items():
            if status == "PAID":
                sold[s.tenant, p] += q
            elif status == "PENDING":
                held[s.tenant, p] += q
    for slug, pid, stock, reserved, sold_units in products:
        assert (stock, reserved, sold_units) == (
            STOCK - sold[slug, pid], held[slug, pid], sold[slug, pid]), (slug, pid)


def check_answers(db: Database, scripts: list[Script], *, exact: bool) -> None:
    """Every final answer is true of the final books: a 200 is the stored first answer.

    `exact`: no request needed a retry and each got the status its script expects.
    """
    with db.transaction(readonly=True) as session:
        txns = {(t.tenant_id, t.gateway_txn_id): t for t in session.scalars(select(PaymentTransaction))}
        slugs = dict(session.execute(select(Tenant.slug, Tenant.id)).all())
    for s in scripts:
        for d in s.deliveries:
            assert d.status in (200, 409), (d.path, d.request, d.status, d.body)
            if exact:
                assert not d.retried, d.attempts
            if d.request is None:  # a refund: after a lost answer, a later one may find
                assert d.status == 200 or not exact, d.attempts  # nothing left (409)
                continue
            txn = txns.get((slugs[s.tenant], d.request["gateway_txn_id"]))
            same = txn is not None and (txn.order_id, txn.amount, txn.status) == (
                d.request["order_id"], d.request["amount"], d.request["status"])
            if d.status == 200:
                assert same, (d.request, d.body)
                assert {k: v for k, v in d.body.items() if k != "replayed"} == txn.response
            else:
                assert not same and d.body["status"] == "conflict", (d.request, d.body)
