"""Ticket codes people can read aloud and nobody can guess."""

from __future__ import annotations

import secrets

# 32 symbols: no 0/O, no 1/I; 16 of them carry 80 bits of randomness.
ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
LENGTH = 16
PREFIX = "TKT-"


def new_ticket_code() -> str:
    """A fresh random ticket code such as `TKT-7KQ2…`."""
    return PREFIX + "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def looks_like_ticket_code(value: str) -> bool:
    """Cheap shape check before touching the database."""
    body = value[len(PREFIX):] if value.startswith(PREFIX) else None
    return body is not None and len(body) == LENGTH and all(c in ALPHABET for c in body)
