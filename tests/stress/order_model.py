"""What the rules say should happen to orders, stock and payments: a model to test against.

Queued from the contract and the state table (order/state.py TRANSITIONS), not from the
service code: a notification is replayed, refused as a conflict, or applied; an applied
SUCCESS pays a payable order (or revives a closed one whose stock is still free) and is
otherwise money to refund; a FAILED one marks a payable order failed and is otherwise
ignored; a refund returns the applied payment of a paid order first, then extra money;
expiry closes payable orders and releases what they held.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ticketing.order.state import TRANSITIONS, PayState, order_status

PAYABLE = {PayState.UNPAID, PayState.PAYING, PayState.FAILED}


@dataclass
class Payment:
    order: int  # index into Model.orders
    amount: int
    status: str
    applied: bool
    body: dict[str, Any] | None = None  # the first answer, replayed to duplicates
    refunded: bool = False


@dataclass
class OrderModel:
    id: int
    items: dict[int, int]  # product -> units
    total: int
    state: PayState = PayState.UNPAID

    @property
    def status(self) -> str:
        return order_status(self.state)


@dataclass
class Model:
    """Stock per product, orders, and gateway transactions by id."""

    stock: dict[int, int]
    price: dict[int, int]
    reserved: dict[int, int] = field(default_factory=dict)
    sold: dict[int, int] = field(default_factory=dict)
    orders: list[OrderModel] = field(default_factory=list)
    payments: dict[str, Payment] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.loaded = dict(self.stock)
        for p in self.stock:
            self.reserved.setdefault(p, 0)
            self.sold.setdefault(p, 0)

    def free(self, product: int) -> int:
        return self.stock[product] - self.reserved[product]

    def place(self, items: dict[int, int]) -> bool:
        """Hold stock for a new order; False (409) when any product is short."""
        if any(self.free(p) < q for p, q in items.items()):
            return False
        for p, q in items.items():
            self.reserved[p] += q
        return True

    def needs_refund(self, index: int) -> bool:
        return any(t.order == index and t.status == "SUCCESS" and not t.applied and not t.refunded
                   for t in self.payments.values())

    def notify(self, index: int, txn: str, status: str, amount: int) -> tuple[int, str]:
        """(HTTP status, body status) the rules give; records what is applied."""
        order = self.orders[index]
        prior = self.payments.get(txn)
        if prior is not None:
            same = (prior.order, prior.amount, prior.status) == (index, amount, status)
            return (200, "replayed") if same else (409, "conflict")
        if amount != order.total:
            return 409, "conflict"
        target = PayState.PAID if status == "SUCCESS" else PayState.FAILED
        allowed = target in TRANSITIONS[order.state]
        if target == PayState.PAID and allowed and order.state == PayState.CLOSED:
            allowed = all(self.free(p) >= q for p, q in order.items.items())
        if allowed:
            self._move(order, target)
        outcome = {(True, "SUCCESS"): "processed", (True, "FAILED"): "failed",
                   (False, "SUCCESS"): "needs_refund", (False, "FAILED"): "ignored"}[allowed, status]
        self.payments[txn] = Payment(index, amount, status, applied=allowed and status == "SUCCESS")
        return 200, outcome

    def refund(self, index: int) -> int:
        """HTTP status of an operator refund: the applied payment first, then extra money."""
        order = self.orders[index]
        mine = [t for t in self.payments.values()
                if t.order == index and t.status == "SUCCESS" and not t.refunded]
        applied = [t for t in mine if t.applied]
        if applied and PayState.REFUNDED in TRANSITIONS[order.state]:
            applied[0].refunded = True
            self._move(order, PayState.REFUNDED)
            return 200
        extra = [t for t in mine if not t.applied]
        if extra:
            extra[0].refunded = True
            return 200
        return 409

    def expire(self) -> int:
        """Close every payable order (the job runs after their TTL); how many closed."""
        due = [o for o in self.orders if o.state in PAYABLE]
        for order in due:
            self._move(order, PayState.CLOSED)
        return len(due)

    def start_payment(self, index: int) -> int:
        order = self.orders[index]
        if order.state not in PAYABLE:
            return 409
        order.state = PayState.PAYING
        return 200

    def _move(self, order: OrderModel, target: PayState) -> None:
        for p, q in order.items.items():
            if target == PayState.PAID:
                if order.state in PAYABLE:
                    self.reserved[p] -= q
                self.stock[p] -= q
                self.sold[p] += q
            elif target == PayState.CLOSED:
                self.reserved[p] -= q
            elif target == PayState.REFUNDED:
                self.stock[p] += q
                self.sold[p] -= q
        order.state = target
