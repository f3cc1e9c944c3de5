"""Tenants, their users, products and gateway settings; and who a token is."""

from __future__ import annotations

import hashlib
import secrets
import weakref
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ticketing.kit.clock import utcnow
from ticketing.kit.errors import Conflict, Forbidden, NotFound, Unauthorized
from ticketing.models import GatewayConfig, Product, ProductEntitlement, Tenant, User
from ticketing.tenant.repository import TenantData, tenant_by_slug

ROLES = ("customer", "staff")


def hash_token(token: str) -> str:
    """Tokens are stored as their SHA-256, never as given."""
    return hashlib.sha256(token.encode()).hexdigest()


# Tenants are never changed or removed once created, so each process remembers them:
# one query less on every request. Kept per engine (tests use many databases), and
# looked up by the engine itself: rendering its URL for a key cost more than the rest
# of a lookup, on every request and every entry of a batch.
_tenants: weakref.WeakKeyDictionary[Any, dict[str, Tenant]] = weakref.WeakKeyDictionary()


def find_tenant(session: Session, slug: str) -> Tenant | None:
    """The tenant with this slug, if any (remembered once found)."""
    engine = session.get_bind().engine  # a session bound to a connection: its engine
    known = _tenants.get(engine)
    if known is None:
        known = _tenants.setdefault(engine, {})
    tenant = known.get(slug)
    if tenant is None:
        tenant = tenant_by_slug(session, slug)
        if tenant is not None:
            session.expunge(tenant)
            known[slug] = tenant
    return tenant


def get_tenant(session: Session, slug: str) -> Tenant:
    """The tenant named by `slug`, or 404."""
    tenant = find_tenant(session, slug)
    if tenant is None:
        raise NotFound("Tenant not found", code="tenant_not_found")
    return tenant


@dataclass(frozen=True)
class Caller:
    """An authenticated customer or staff member, with their tenant."""

    tenant: Tenant
    user: Any  # the caller's `users` row: id, name, role

    @property
    def tenant_id(self) -> int:
        return self.tenant.id


def authenticate(session: Session, slug: str, token: str | None, role: str | None) -> Caller:
    """Resolve tenant and bearer token; 404 unknown tenant, 401 bad token, 403 wrong role."""
    tenant = get_tenant(session, slug)
    if not token:
        raise Unauthorized("Missing bearer token")
    user = TenantData(session, tenant.id).user_by_token_hash(hash_token(token))
    if user is None:
        raise Unauthorized("Invalid token for this tenant")
    if role is not None and user.role != role:
        raise Forbidden(f"This needs a {role} token", code="wrong_role")
    return Caller(tenant=tenant, user=user)


def create_tenant(session: Session, slug: str, name: str) -> Tenant:
    """Add a tenant; 409 if the slug is taken."""
    if tenant_by_slug(session, slug) is not None:
        raise Conflict("Tenant already exists", code="tenant_exists")
    tenant = Tenant(slug=slug, name=name, created_at=utcnow())
    session.add(tenant)
    session.flush()
    return tenant


def create_user(
    session: Session, tenant: Tenant, name: str, role: str, token: str | None
) -> tuple[User, str]:
    """Add a user; returns it with its token (generated when not given)."""
    token = token or secrets.token_urlsafe(24)
    data = TenantData(session, tenant.id)
    if data.user_by_token_hash(hash_token(token)) is not None:
        raise Conflict("Token already in use in this tenant", code="token_in_use")
    user = User(
        tenant_id=tenant.id, name=name, role=role, token_hash=hash_token(token),
        created_at=utcnow(),
    )
    session.add(user)
    session.flush()
    return user, token


def create_product(
    session: Session,
    tenant: Tenant,
    *,
    product_id: int,
    name: str,
    price: int,
    stock: int,
    entitlements: list[dict[str, Any]],
) -> tuple[Product, list[ProductEntitlement]]:
    """Add a product with its entitlements; 409 if the id is taken in this tenant."""
    data = TenantData(session, tenant.id)
    if data.product(product_id) is not None:
        raise Conflict("Product already exists", code="product_exists")
    product = Product(
        tenant_id=tenant.id, product_id=product_id, name=name, price=price,
        currency="CNY", stock_loaded=stock, stock=stock, reserved=0, sold=0,
        created_at=utcnow(),
    )
    session.add(product)
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent create of the same id
        raise Conflict("Product already exists", code="product_exists") from exc
    rows = [
        ProductEntitlement(
            tenant_id=tenant.id, product_pk=product.id, code=e["code"], name=e["name"],
            uses=e["uses"],
        )
        for e in entitlements
    ]
    session.add_all(rows)
    session.flush()
    return product, rows


def get_product(session: Session, tenant: Tenant, product_id: int) -> Product:
    """A product of this tenant, or 404."""
    product = TenantData(session, tenant.id).product(product_id)
    if product is None:
        raise NotFound("Product not found", code="product_not_found")
    return product


def product_entitlements(session: Session, tenant: Tenant, product: Product) -> list[ProductEntitlement]:
    """The entitlements a ticket of this product carries."""
    return TenantData(session, tenant.id).entitlements([product.id])


def set_gateway_config(
    session: Session, tenant: Tenant, gateway: str, config: dict[str, Any], secrets_: dict[str, Any]
) -> GatewayConfig:
    """Create or replace a tenant's settings for one gateway."""
    data = TenantData(session, tenant.id)
    row = data.gateway_config(gateway)
    if row is None:
        row = GatewayConfig(tenant_id=tenant.id, gateway=gateway)
        session.add(row)
    row.config = config
    row.secrets = secrets_
    row.updated_at = utcnow()
    session.flush()
    return row


def gateway_config(session: Session, tenant_id: int, gateway: str) -> Any | None:
    """A tenant's settings for one gateway (a read-only row), if configured."""
    return TenantData(session, tenant_id).gateway_settings(gateway)
