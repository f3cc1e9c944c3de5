"""The state machine table, on its own."""

from ticketing.order.state import ORDER_STATUS, PENDING_STATES, TRANSITIONS, PayState, is_allowed


def test_every_state_has_rules_and_an_order_status():
    assert set(TRANSITIONS) == set(PayState)
    assert set(ORDER_STATUS) == set(PayState)


def test_pending_states_are_the_payable_ones():
    assert PENDING_STATES == {PayState.UNPAID, PayState.PAYING, PayState.FAILED}


def test_a_failure_never_undoes_a_payment():
    assert not is_allowed(PayState.PAID, PayState.FAILED)
    assert not is_allowed(PayState.PAID, PayState.CLOSED)
    assert not is_allowed(PayState.PAID, PayState.UNPAID)


def test_refund_only_from_paid_and_refunded_is_final():
    assert [s for s in PayState if is_allowed(s, PayState.REFUNDED)] == [PayState.PAID]
    assert TRANSITIONS[PayState.REFUNDED] == frozenset()


def test_pending_orders_can_be_paid_failed_closed_or_retried():
    for state in PENDING_STATES:
        for target in (PayState.PAYING, PayState.PAID, PayState.FAILED, PayState.CLOSED):
            assert is_allowed(state, target), (state, target)


def test_a_closed_order_can_only_be_revived_by_a_payment():
    assert TRANSITIONS[PayState.CLOSED] == {PayState.PAID}


def test_nothing_goes_back_to_unpaid():
    assert not any(is_allowed(s, PayState.UNPAID) for s in PayState)
