"""Operator endpoints for tenants, products, users and gateway settings."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from ticketing.api.deps import DbDep, Operator
from ticketing.kit.clock import rfc3339
from ticketing.models import Product, ProductEntitlement
from ticketing.tenant import service
from ticketing.tenant.schemas import MockGatewayIn, ProductIn, TenantIn, UserIn

router = APIRouter(prefix="/admin/tenants", tags=["operator"], dependencies=[Operator])
Slug = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
ProductId = Annotated[int, Path(ge=1, le=2**53)]


def product_view(product: Product, entitlements: list[ProductEntitlement]) -> dict[str, Any]:
    """The operator's view of a product and its stock counters."""
    return {
        "product_id": product.product_id, "name": product.name, "price": product.price,
        "currency": product.currency, "stock": product.stock, "reserved": product.reserved,
        "available": product.stock - product.reserved, "sold": product.sold,
        "stock_loaded": product.stock_loaded,
        "entitlements": [{"code": e.code, "name": e.name, "uses": e.uses} for e in entitlements],
        "created_at": rfc3339(product.created_at),
    }


@router.post("")
def create_tenant(body: TenantIn, db: DbDep) -> dict[str, Any]:
    """Add a tenant (merchant)."""
    with db.transaction() as session:
        tenant = service.create_tenant(session, body.slug, body.name)
        return {"slug": tenant.slug, "name": tenant.name, "created_at": rfc3339(tenant.created_at)}


@router.post("/{slug}/products")
def create_product(slug: Slug, body: ProductIn, db: DbDep) -> dict[str, Any]:
    """Add a product with its entitlements; the id is unique within the tenant."""
    with db.transaction() as session:
        tenant = service.get_tenant(session, slug)
        product, ents = service.create_product(
            session, tenant, product_id=body.product_id, name=body.name, price=body.price,
            stock=body.stock, entitlements=[e.model_dump() for e in body.entitlements],
        )
        return product_view(product, ents)


@router.get("/{slug}/products/{product_id}")
def get_product(slug: Slug, product_id: ProductId, db: DbDep) -> dict[str, Any]:
    """A product with `stock` (on hand) and `reserved` (held by unpaid orders)."""
    with db.transaction(readonly=True) as session:
        tenant = service.get_tenant(session, slug)
        product = service.get_product(session, tenant, product_id)
        return product_view(product, service.product_entitlements(session, tenant, product))


@router.post("/{slug}/users")
def create_user(slug: Slug, body: UserIn, db: DbDep) -> dict[str, Any]:
    """Add a customer or staff member; the token is shown this once."""
    with db.transaction() as session:
        tenant = service.get_tenant(session, slug)
        user, token = service.create_user(session, tenant, body.name, body.role, body.token)
        return {"user_id": user.id, "name": user.name, "role": user.role, "token": token}


@router.put("/{slug}/gateways/mock")
def set_mock_gateway(slug: Slug, body: MockGatewayIn, db: DbDep) -> dict[str, Any]:
    """Set (or clear, with null) the secret mock notifications are signed with."""
    with db.transaction() as session:
        tenant = service.get_tenant(session, slug)
        secrets_ = {"secret": body.secret} if body.secret else {}
        service.set_gateway_config(session, tenant, "mock", {}, secrets_)
        return {"gateway": "mock", "signed": bool(body.secret)}
