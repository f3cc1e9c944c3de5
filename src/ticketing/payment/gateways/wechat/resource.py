"""Reading fields of a decrypted WeChat Pay resource (transaction or refund), strictly."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any


class ResourceError(ValueError):
    """A decrypted resource lacks a field the service needs, or has it malformed."""

    reason_code = "bad_resource"


def text(plain: Mapping[str, Any], name: str, max_length: int, *, required: bool = True
         ) -> str | None:
    """A text field; None when optional and absent."""
    value = plain.get(name)
    if value in (None, "") and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise ResourceError(f"resource {name} is missing or malformed")
    return value


def amount(plain: Mapping[str, Any], name: str, *, required: bool = True) -> int | None:
    """`amount.<name>` in fen; None when optional and absent."""
    block = plain.get("amount")
    value = block.get(name) if isinstance(block, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if required:
        raise ResourceError(f"resource amount.{name} is missing or malformed")
    return None


def moment(plain: Mapping[str, Any], name: str) -> datetime | None:
    """An RFC 3339 time field (WeChat Pay writes +08:00) in UTC; None when absent or bad."""
    raw = plain.get(name)
    try:
        when = datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        return None
    if when is None or when.tzinfo is None:
        return None
    return when.astimezone(UTC)
