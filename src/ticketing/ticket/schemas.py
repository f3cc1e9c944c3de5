"""Request and response shapes of the ticket and gate endpoints."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ticketing.order.schemas import TicketOut
from ticketing.tenant.schemas import NO_NUL


class RedeemIn(BaseModel):
    entitlement: str = Field(pattern=r"^[a-z0-9_-]{1,32}$",
                             description="an entitlement code, e.g. metro")
    location: str = Field(min_length=1, max_length=100, pattern=NO_NUL,
                          description="the gate, e.g. Gate 3")
    nonce: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$",
        description="chosen by the scanner; the same nonce again replays the first answer")


class StaffOut(BaseModel):
    user_id: int
    name: str


class RedemptionOut(BaseModel):
    id: int
    entitlement: str
    location: str
    staff: StaffOut
    redeemed_at: str


class PaymentOut(BaseModel):
    gateway: str | None
    transaction_id: str | None
    paid_at: str | None


class TicketDetailOut(TicketOut):
    redemptions: list[RedemptionOut] = Field(description="accepted uses, oldest first")
    payment: PaymentOut


class RedeemOut(BaseModel):
    ticket_code: str
    redemption: RedemptionOut
    uses_left: int = Field(description="uses of this entitlement left after this redemption")
    ticket_status: str = Field(description="ACTIVE, or REDEEMED once every entitlement is used up")
    replayed: bool = Field(description="true when a retried nonce answered with the first scan")


class ScanOut(BaseModel):
    """A scan as the operator sees it, accepted or refused."""

    id: int
    ticket_code: str
    order_id: int | None
    product_id: int | None
    entitlement: str
    location: str
    staff: StaffOut
    redeemed_at: str
    accepted: bool
    reason: str | None = Field(description="the refusal's error code; null when accepted")
    uses_left: int | None
    nonce: str | None


class TicketKeyOut(BaseModel):
    tenant: str
    algorithm: str
    public_key: str = Field(description="raw 32-byte Ed25519 public key, base64url without padding")
    public_key_pem: str
    payload_format: str
    signed_message: str
    signature_encoding: str
