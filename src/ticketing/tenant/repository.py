"""Storage of tenants, users, products and gateway settings."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, bindparam, select
from sqlalchemy.orm import Session

from ticketing.kit.sql import ListLookup, Pipeline, Queued, run
from ticketing.kit.tenancy import TenantRepository
from ticketing.models import GatewayConfig, Product, ProductEntitlement, Tenant, User

# Read on every request (who is calling, which products, which gateway settings):
# built once and read as rows (see kit.sql.run).
_USERS, _PRODUCTS, _GATEWAYS = User.__table__, Product.__table__, GatewayConfig.__table__
_USER_BY_TOKEN = select(*_USERS.c).where(_USERS.c.tenant_id == bindparam("tenant_id"),
                                         _USERS.c.token_hash == bindparam("token_hash"))
_USERS_BY_TOKENS = ListLookup(select(*_USERS.c).where(_USERS.c.tenant_id == bindparam("tenant_id")),
                              _USERS.c.token_hash, "token_hashes")
_PRODUCTS_BY_ID = ListLookup(
    select(*_PRODUCTS.c).where(_PRODUCTS.c.tenant_id == bindparam("tenant_id")),
    _PRODUCTS.c.product_id, "product_ids")
_GATEWAY = select(*_GATEWAYS.c).where(_GATEWAYS.c.tenant_id == bindparam("tenant_id"),
                                      _GATEWAYS.c.gateway == bindparam("gateway"))


def tenant_by_slug(session: Session, slug: str) -> Tenant | None:
    """The tenant with this slug, if any (tenants are the one unscoped table)."""
    return session.execute(select(Tenant).where(Tenant.slug == slug)).scalar_one_or_none()


class TenantData(TenantRepository):
    """Users, products and gateway settings of one tenant."""

    def user_by_token_hash(self, token_hash: str) -> Row[Any] | None:
        """The user holding this token (a read-only row), if any."""
        params = {"tenant_id": self.tenant_id, "token_hash": token_hash}
        return run(self.session, _USER_BY_TOKEN, params).one_or_none()

    def product(self, product_id: int, *, lock: bool = False) -> Product | None:
        stmt = self.select(Product).where(Product.product_id == product_id)
        if lock:
            stmt = stmt.with_for_update()
        return self.session.execute(stmt).scalar_one_or_none()

    def products(self, product_ids: list[int]) -> list[Row[Any]]:
        """The products with these ids (read-only rows)."""
        params = {"tenant_id": self.tenant_id, "product_ids": product_ids}
        return list(_PRODUCTS_BY_ID.run(self.session, params))

    def entitlements(self, product_pks: list[int]) -> list[ProductEntitlement]:
        stmt = (
            self.select(ProductEntitlement)
            .where(ProductEntitlement.product_pk.in_(product_pks))
            .order_by(ProductEntitlement.product_pk, ProductEntitlement.id)
        )
        return list(self.session.execute(stmt).scalars())

    def gateway_config(self, gateway: str) -> GatewayConfig | None:
        """The settings row to change (an ORM object)."""
        stmt = self.select(GatewayConfig).where(GatewayConfig.gateway == gateway)
        return self.session.execute(stmt).scalar_one_or_none()

    def gateway_settings(self, gateway: str) -> Row[Any] | None:
        """The settings to read (a row): what every payment and notification needs."""
        params = {"tenant_id": self.tenant_id, "gateway": gateway}
        return run(self.session, _GATEWAY, params).one_or_none()


def users_by_token_hashes_in(pipeline: Pipeline, tenant_id: int, token_hashes: set[str]) -> Queued:
    """The users holding these tokens (read-only rows), queued in `pipeline`: the rows
    once it is flushed."""
    return _USERS_BY_TOKENS.queue(pipeline, {"tenant_id": tenant_id,
                                             "token_hashes": sorted(token_hashes)})


def products_in(pipeline: Pipeline, tenant_id: int, product_ids: list[int]) -> Queued:
    """`TenantData.products`, queued in `pipeline`: the rows once flushed."""
    return _PRODUCTS_BY_ID.queue(pipeline, {"tenant_id": tenant_id, "product_ids": product_ids})


def gateway_settings_in(pipeline: Pipeline, tenant_id: int, gateway: str) -> Queued:
    """`TenantData.gateway_settings`, queued in `pipeline`: at most one row once flushed."""
    return pipeline.read(_GATEWAY, {"tenant_id": tenant_id, "gateway": gateway})
