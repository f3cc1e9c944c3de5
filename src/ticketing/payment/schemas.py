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


Pem = Annotated[str, Field(min_length=1, max_length=16384)]


class PlatformCertificateIn(BaseModel):
    serial_no: str = Field(pattern=r"^[0-9A-Fa-f]{1,64}$")
    pem: Pem


class WechatGatewayIn(BaseModel):
    """A tenant's WeChat Pay merchant settings (secrets are kept, never shown again)."""

    mchid: str = Field(pattern=r"^[0-9]{6,32}$")
    appid: str = Field(pattern=r"^[A-Za-z0-9_]{4,32}$")
    apiv3_key: str | None = Field(default=None, description="exactly 32 bytes; omit to keep")
    public_key_id: str | None = Field(default=None, max_length=64,
                                      pattern=r"^[A-Za-z0-9_]+$")
    public_key_pem: Pem | None = None
    merchant_serial_no: str | None = Field(default=None, pattern=r"^[0-9A-Fa-f]{1,64}$")
    merchant_private_key_pem: Pem | None = Field(default=None, description="omit to keep")
    platform_certificates: list[PlatformCertificateIn] = Field(default_factory=list,
                                                               max_length=8)
    sp_mchid: str | None = Field(default=None, pattern=r"^[0-9]{6,32}$")
    sub_mchid: str | None = Field(default=None, pattern=r"^[0-9]{6,32}$")
