"""Request dependencies: settings, database, tenant header, bearer token, operator.

All are `async def`: none of them blocks, and FastAPI runs a plain `def` dependency
in the thread pool, a hand-off to a thread and back for each one on every request.
"""

from __future__ import annotations

import hmac
import re
from typing import Annotated

from fastapi import Depends, Header, Request

from ticketing.db import Database
from ticketing.kit.errors import NotFound, Unauthorized
from ticketing.settings import Settings

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_db(request: Request) -> Database:
    return request.app.state.db


def slug_of(x_tenant_id: str | None) -> str:
    """The tenant an `X-Tenant-ID` value names (absent means `default`); 404 if none can."""
    slug = (x_tenant_id or "default").strip()
    if not SLUG.match(slug):
        raise NotFound("Tenant not found", code="tenant_not_found")
    return slug


async def tenant_slug(x_tenant_id: Annotated[str | None, Header()] = None) -> str:
    """The tenant named by `X-Tenant-ID` (absent means `default`)."""
    return slug_of(x_tenant_id)


def token_of(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` value (None if there is none); 401 if
    the value is not of that form."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization must be 'Bearer <token>'")
    return token.strip()


async def bearer_token(authorization: Annotated[str | None, Header()] = None) -> str | None:
    """The token of an `Authorization: Bearer …` header, if any."""
    return token_of(authorization)


async def require_operator(
    token: Annotated[str | None, Depends(bearer_token)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> None:
    """Only the operator token passes."""
    expected = settings.admin_token
    if not token:
        raise Unauthorized("Missing bearer token")
    if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
        raise Unauthorized("Invalid operator token")


DbDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
TenantDep = Annotated[str, Depends(tenant_slug)]
TokenDep = Annotated[str | None, Depends(bearer_token)]
Operator = Depends(require_operator)
