"""The demo data of `ticketing demo`; loading it twice changes nothing."""

from __future__ import annotations

from sqlalchemy.orm import Session

from ticketing.tenant import service
from ticketing.tenant.repository import TenantData, tenant_by_slug

DEMO_PRODUCTS = [
    {"product_id": 101, "name": "3-in-1 Transport Pass", "price": 9900, "stock": 1000,
     "entitlements": [{"code": "metro", "name": "Metro ride", "uses": 1},
                      {"code": "bus", "name": "Bus ride", "uses": 1},
                      {"code": "ferry", "name": "Ferry crossing", "uses": 1}]},
    {"product_id": 102, "name": "Airport Express Single", "price": 2500, "stock": 1000,
     "entitlements": [{"code": "airport", "name": "Airport Express ride", "uses": 1}]},
]
DEMO_USERS = [("Demo Customer", "customer", "user123"), ("Gate Staff", "staff", "staff123")]


def load_demo(session: Session) -> list[str]:
    """Create what is missing of the demo tenant; returns what was created."""
    created: list[str] = []
    tenant = tenant_by_slug(session, "default")
    if tenant is None:
        tenant = service.create_tenant(session, "default", "Demo Transit Co.")
        created.append("tenant default")
    data = TenantData(session, tenant.id)
    for spec in DEMO_PRODUCTS:
        if data.product(spec["product_id"]) is None:
            service.create_product(session, tenant, **spec)
            created.append(f"product {spec['product_id']}")
    for name, role, token in DEMO_USERS:
        if data.user_by_token_hash(service.hash_token(token)) is None:
            service.create_user(session, tenant, name, role, token)
            created.append(f"{role} {token}")
    return created
