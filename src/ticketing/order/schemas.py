"""Request and response shapes of the order endpoints."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

ProductId = Annotated[int, Field(strict=True, ge=1, le=2**53)]
Quantity = Annotated[int, Field(strict=True, ge=1, le=100)]


class OrderItemIn(BaseModel):
    product_id: ProductId
    quantity: Quantity


class OrderIn(BaseModel):
    items: list[OrderItemIn] = Field(min_length=1, max_length=50)


class OrderItemOut(BaseModel):
    product_id: int
    product_name: str
    quantity: int
    unit_price: int
    amount: int


class OrderOut(BaseModel):
    order_id: int
    out_trade_no: str
    status: str = Field(description="PENDING, PAID, REFUNDED or CLOSED")
    payment_status: int = Field(description="0 unpaid, 1 paying, 2 paid, 3 refunded, 4 failed, 5 closed")
    total_amount: int = Field(description="fen")
    currency: str
    items: list[OrderItemOut]
    created_at: str
    expires_at: str


class EntitlementOut(BaseModel):
    code: str
    name: str
    uses_total: int
    uses_left: int


class TicketOut(BaseModel):
    ticket_code: str
    status: str = Field(description="ACTIVE, REDEEMED or VOID")
    order_id: int
    product_id: int
    product_name: str
    entitlements: list[EntitlementOut]
    issued_at: str
    redemptions: list[dict]


class OrderDetailOut(OrderOut):
    paid_at: str | None
    transaction_id: str | None
    gateway: str | None
    needs_refund: bool
    tickets: list[TicketOut]


class PayIn(BaseModel):
    gateway: str = Field(pattern="^(mock|wechat)$")
    payer_openid: str | None = Field(default=None, min_length=1, max_length=128)
