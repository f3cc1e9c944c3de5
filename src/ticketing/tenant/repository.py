"""Storage of tenants, users, products and gateway settings."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ticketing.kit.tenancy import TenantRepository
from ticketing.models import GatewayConfig, Product, ProductEntitlement, Tenant, User


def tenant_by_slug(session: Session, slug: str) -> Tenant | None:
    """The tenant with this slug, if any (tenants are the one unscoped table)."""
    return session.execute(select(Tenant).where(Tenant.slug == slug)).scalar_one_or_none()


class TenantData(TenantRepository):
    """Users, products and gateway settings of one tenant."""

    def user_by_token_hash(self, token_hash: str) -> User | None:
        stmt = self.select(User).where(User.token_hash == token_hash)
        return self.session.execute(stmt).scalar_one_or_none()

    def product(self, product_id: int, *, lock: bool = False) -> Product | None:
        stmt = self.select(Product).where(Product.product_id == product_id)
        if lock:
            stmt = stmt.with_for_update()
        return self.session.execute(stmt).scalar_one_or_none()

    def products(self, product_ids: list[int]) -> list[Product]:
        stmt = self.select(Product).where(Product.product_id.in_(product_ids))
        return list(self.session.execute(stmt).scalars())

    def entitlements(self, product_pks: list[int]) -> list[ProductEntitlement]:
        stmt = (
            self.select(ProductEntitlement)
            .where(ProductEntitlement.product_pk.in_(product_pks))
            .order_by(ProductEntitlement.product_pk, ProductEntitlement.id)
        )
        return list(self.session.execute(stmt).scalars())

    def gateway_config(self, gateway: str) -> GatewayConfig | None:
        stmt = self.select(GatewayConfig).where(GatewayConfig.gateway == gateway)
        return self.session.execute(stmt).scalar_one_or_none()
