"""Request shapes of the operator API."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator

Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
# Free text: PostgreSQL text cannot hold NUL, so a NUL is refused here (422), not at INSERT.
NO_NUL = r"^[^\x00]+$"
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=NO_NUL)]


class TenantIn(BaseModel):
    slug: Slug
    name: Name


class EntitlementIn(BaseModel):
    code: str = Field(pattern=r"^[a-z0-9_-]{1,32}$")
    name: Name
    uses: Annotated[int, Field(strict=True, ge=1, le=1000)]


class ProductIn(BaseModel):
    product_id: Annotated[int, Field(strict=True, ge=1, le=2**53)]
    name: Name
    price: Annotated[int, Field(strict=True, ge=0, le=10**10)]
    stock: Annotated[int, Field(strict=True, ge=0, le=10**9)]
    entitlements: list[EntitlementIn] = Field(default_factory=list, max_length=20)

    @field_validator("entitlements")
    @classmethod
    def _unique_codes(cls, value: list[EntitlementIn]) -> list[EntitlementIn]:
        codes = [e.code for e in value]
        if len(codes) != len(set(codes)):
            raise ValueError("entitlement codes must be unique")
        return value


class UserIn(BaseModel):
    name: Name
    role: Literal["customer", "staff"]
    token: str | None = Field(default=None, min_length=6, max_length=128, pattern=r"^[\x21-\x7e]+$")


class MockGatewayIn(BaseModel):
    secret: str | None = Field(default=None, min_length=1, max_length=256, pattern=NO_NUL)


class FaultIn(BaseModel):
    point: str
    times: Annotated[int, Field(strict=True, ge=1, le=1000)] = 1
