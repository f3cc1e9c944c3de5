"""Ticket codes people can read aloud and nobody can guess."""

from __future__ import annotations

import base64
import secrets

# 32 symbols: no 0/O, no 1/I; 16 of them carry 80 bits of randomness.
ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
LENGTH = 16
PREFIX = "TKT-"
# base32's symbols (RFC 4648) to ours, one for one
_OURS = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", ALPHABET.encode())


def new_ticket_code() -> str:
    """A fresh random ticket code such as `TKT-7KQ2…`.

    80 random bits from one read of the system's generator, five bits a symbol: base32
    writes 10 bytes as exactly 16 symbols of its 32, each mapped to one of ours (the
    alphabet has exactly 32 symbols, so every symbol is equally likely).
    """
    symbols = base64.b32encode(secrets.token_bytes(LENGTH * 5 // 8)).translate(_OURS)
    return PREFIX + symbols.decode()


def looks_like_ticket_code(value: str) -> bool:
    """Cheap shape check before touching the database."""
    body = value[len(PREFIX):] if value.startswith(PREFIX) else None
    return body is not None and len(body) == LENGTH and all(c in ALPHABET for c in body)
