"""Request shapes of the payment endpoints."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field


class MockNotifyIn(BaseModel):
    order_id: Annotated[int, Field(strict=True, ge=1, le=2**63 - 1)]
    gateway_txn_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-.:]+$")
    status: Literal["SUCCESS", "FAILED"]
    amount: Annotated[int, Field(strict=True, ge=0, le=10**12)]


class NotifyOut(BaseModel):
    status: str = Field(description="processed, failed, needs_refund, ignored, conflict or error")
    order_id: int | None = None
    order_status: str | None = None
    tickets_issued: list[dict] | None = None
    replayed: bool | None = None
    error: str | None = None
    code: str | None = None
