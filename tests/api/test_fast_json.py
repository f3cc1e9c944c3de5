"""api.lean.FastJSON writes the bytes Starlette's JSONResponse writes, for the values
the service's answers hold."""

from __future__ import annotations

from fastapi.responses import JSONResponse
from hypothesis import given, settings
from hypothesis import strategies as st

from ticketing.api.lean import FastJSON

# text of every kind (control characters, quotes, backslashes, astral and separator
# characters), integers of any size JSON money could take, booleans, nulls; no floats
scalars = (st.text() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
           | st.booleans() | st.none())
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5)
    | st.dictionaries(st.text() | st.integers(min_value=0, max_value=2**31), inner, max_size=5),
    max_leaves=30)


@settings(max_examples=500, deadline=None)
@given(values)
def test_the_same_bytes_as_starlette(value):
    assert FastJSON(value).body == JSONResponse(value).body


def test_a_notification_answer_is_written_the_same():
    body = {"status": "processed", "order_id": 7, "payment_status": 2,
            "tickets_issued": [{"code": "TK-ÄB\u2028", "entitlements": [{"uses": 1}]}],
            "replayed": False, "detail": None}
    assert FastJSON(body, status_code=200).body == JSONResponse(body).body
