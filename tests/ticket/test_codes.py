"""Ticket codes: 80 random bits, no look-alike characters, one fixed shape."""

import math
import re
from collections import Counter

from ticketing.ticket.codes import ALPHABET, LENGTH, PREFIX, looks_like_ticket_code, new_ticket_code

SHAPE = re.compile(r"^TKT-[23456789ABCDEFGHJKLMNPQRSTUVWXYZ]{16}$")


def test_alphabet_has_32_distinct_symbols_and_no_look_alikes():
    assert len(ALPHABET) == len(set(ALPHABET)) == 32
    assert not set(ALPHABET) & set("01OIlo")
    assert ALPHABET == ALPHABET.upper()


def test_codes_carry_80_bits():
    assert LENGTH * math.log2(len(ALPHABET)) == 80


def test_codes_have_the_documented_shape_and_do_not_repeat():
    codes = [new_ticket_code() for _ in range(20_000)]
    assert all(SHAPE.match(c) for c in codes)
    assert all(looks_like_ticket_code(c) for c in codes)
    assert len(set(codes)) == len(codes)


def test_every_symbol_is_used_about_equally():
    counts = Counter("".join(new_ticket_code()[len(PREFIX):] for _ in range(10_000)))
    expected = 10_000 * LENGTH / len(ALPHABET)  # 5000 each; one standard deviation is ~70
    assert set(counts) == set(ALPHABET)
    assert all(abs(n - expected) < 500 for n in counts.values()), counts


def test_shape_check_refuses_near_misses():
    good = new_ticket_code()
    for bad in ("", good.lower(), good[4:], good + "A", good[:-1], "TKT-" + "0" * 16,
                "TKT-" + "O" * 16, "TKT-" + "I" * 16, "TKT-" + "1" * 16, "tkt-" + good[4:],
                "TKT_" + good[4:], good[:-1] + ".", " " + good):
        assert not looks_like_ticket_code(bad), bad
