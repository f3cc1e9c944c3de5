"""Operator endpoints for a tenant's WeChat Pay settings; secrets go in, never out."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from ticketing.api.deps import DbDep, Operator
from ticketing.kit.clock import utcnow
from ticketing.kit.errors import NotFound
from ticketing.payment.gateways.wechat.config import NAME, WechatConfig, validated
from ticketing.payment.schemas import WechatGatewayIn
from ticketing.tenant import service as tenants

router = APIRouter(prefix="/admin/tenants", tags=["operator"], dependencies=[Operator])
Slug = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]


@router.put("/{slug}/gateways/wechat")
def set_wechat_gateway(slug: Slug, body: WechatGatewayIn, db: DbDep) -> dict[str, Any]:
    """Set the tenant's WeChat Pay merchant, keys and certificates (replaces the old ones).

    `apiv3_key` and `merchant_private_key_pem` may be omitted to keep the stored ones.
    """
    with db.transaction() as session:
        tenant = tenants.get_tenant(session, slug)
        row = tenants.gateway_config(session, tenant.id, NAME)
        stored = WechatConfig.from_row(row) if row is not None else None
        config = validated(body.model_dump(), stored, utcnow())
        tenants.set_gateway_config(session, tenant, NAME, *config.to_row())
        return config.view()


@router.get("/{slug}/gateways/wechat")
def get_wechat_gateway(slug: Slug, db: DbDep) -> dict[str, Any]:
    """The tenant's WeChat Pay settings: ids, serials, expiry dates; never a secret."""
    with db.transaction(readonly=True) as session:
        tenant = tenants.get_tenant(session, slug)
        row = tenants.gateway_config(session, tenant.id, NAME)
        if row is None:
            raise NotFound("WeChat Pay is not configured for this tenant",
                           code="gateway_not_configured")
        return WechatConfig.from_row(row).view()
