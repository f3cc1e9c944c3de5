"""Ticket codes as QR images (PNG or SVG), through segno."""

from __future__ import annotations

import io

import segno

# Always a full QR code (make_qr), never a Micro QR that phone scanners cannot read.
# Error correction M survives a scuffed phone screen; 8 px modules and the standard
# 4-module quiet zone keep gate scanners happy at arm's length.
ERROR = "m"
SCALE = 8
BORDER = 4
MEDIA_TYPES = {"png": "image/png", "svg": "image/svg+xml", "txt": "text/plain; charset=utf-8"}


def choose_format(requested: str | None, accept: str | None) -> str:
    """`?format=` wins; otherwise SVG when the client accepts it, PNG by default."""
    if requested:
        return requested
    if accept and "image/svg+xml" in accept.lower():
        return "svg"
    return "png"


def render(payload: str, kind: str) -> bytes:
    """The payload as a QR image of `kind` (png or svg), or as plain text (txt)."""
    if kind == "txt":
        return payload.encode("ascii")
    out = io.BytesIO()
    segno.make_qr(payload, error=ERROR, boost_error=False).save(
        out, kind=kind, scale=SCALE, border=BORDER)
    return out.getvalue()
