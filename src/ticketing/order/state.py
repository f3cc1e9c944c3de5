"""The order/payment state machine, as data.

`payment_status` is the story's 0-5 scale; the order's `status` follows from it.
Every change of `payment_status` goes through `check_transition`; the table below
is the whole of the rules, and tests read it directly.
"""

from __future__ import annotations

from enum import IntEnum


class PayState(IntEnum):
    UNPAID = 0
    PAYING = 1
    PAID = 2
    REFUNDED = 3
    FAILED = 4
    CLOSED = 5


ORDER_STATUS: dict[PayState, str] = {
    PayState.UNPAID: "PENDING",
    PayState.PAYING: "PENDING",
    PayState.FAILED: "PENDING",
    PayState.PAID: "PAID",
    PayState.REFUNDED: "REFUNDED",
    PayState.CLOSED: "CLOSED",
}

# from -> allowed targets. A failure never undoes a payment (2 -> 4 is absent);
# a late payment may revive a closed order if its stock can be held again (5 -> 2).
TRANSITIONS: dict[PayState, frozenset[PayState]] = {
    PayState.UNPAID: frozenset({PayState.PAYING, PayState.PAID, PayState.FAILED, PayState.CLOSED}),
    PayState.PAYING: frozenset({PayState.PAYING, PayState.PAID, PayState.FAILED, PayState.CLOSED}),
    PayState.FAILED: frozenset({PayState.PAYING, PayState.PAID, PayState.FAILED, PayState.CLOSED}),
    PayState.PAID: frozenset({PayState.REFUNDED}),
    PayState.REFUNDED: frozenset(),
    PayState.CLOSED: frozenset({PayState.PAID}),
}

PENDING_STATES = frozenset(s for s, status in ORDER_STATUS.items() if status == "PENDING")


def is_allowed(current: PayState, target: PayState) -> bool:
    """Whether the rules allow moving from `current` to `target`."""
    return target in TRANSITIONS[current]


def order_status(state: PayState) -> str:
    """The order status that goes with a payment status."""
    return ORDER_STATUS[state]
