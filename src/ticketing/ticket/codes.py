"""Ticket codes people can read aloud and nobody can guess."""

from __future__ import annotations

import secrets

# 32 symbols: no 0/O, no 1/I; 16 of them carry 80 bits of randomness.
ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
LENGTH = 16
PREFIX = "TKT-"


def new_ticket_code() -> str:
    """A fresh random ticket code such as `TKT-7KQ2…`.

    80 random bits from one read of the system's generator, five bits a symbol (the
    alphabet has exactly 32 symbols, so every symbol is equally likely).
    """
    bits = int.from_bytes(secrets.token_bytes(LENGTH * 5 // 8))
    return PREFIX + "".join(ALPHABET[(bits >> (5 * i)) & 31] for i in range(LENGTH))


def looks_like_ticket_code(value: str) -> bool:
    """Cheap shape check before touching the database."""
    body = value[len(PREFIX):] if value.startswith(PREFIX) else None
    return body is not None and len(body) == LENGTH and all(c in ALPHABET for c in body)
