"""HTTP entry points for customers' orders."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Request, Response
from pydantic import ValidationError

from ticketing.api.deps import DbDep, Operator, SettingsDep, TenantDep, TokenDep, slug_of, token_of
from ticketing.api.lean import FastJSON, fast_path
from ticketing.kit.errors import NotFound, Unauthorized, error_responses
from ticketing.order import batch, service
from ticketing.order.schemas import OrderDetailOut, OrderIn, OrderOut, PayIn
from ticketing.payment import flows
from ticketing.tenant.service import authenticate, get_tenant

router = APIRouter(tags=["orders"])
OrderId = Annotated[int, Path(ge=1, le=2**63 - 1)]
Slug = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]


KEY_MAX_LENGTH = 128  # of an Idempotency-Key, in characters
IdempotencyKey = Annotated[str | None, Header(max_length=KEY_MAX_LENGTH)]


async def create_order(request: Request, body: OrderIn, tenant: TenantDep, token: TokenDep,
                       idempotency_key: IdempotencyKey = None) -> FastJSON:
    """Place an order and hold its stock until it is paid or expires."""
    return await _place(request, tenant, token, body, idempotency_key)


async def _place(request: Request, tenant: str, token: str | None, body: OrderIn,
                 idempotency_key: str | None) -> FastJSON:
    # A sale opening's other flood: the order's view is built in the contract's JSON
    # form (order.service.order_view), so it goes out as it is, not validated and
    # serialised again by FastAPI, and the app's state is read off the request
    # rather than through two more dependencies per call.
    settings, db = request.app.state.settings, request.app.state.db
    placing = batch.OrderRequest(tenant, token, [i.model_dump() for i in body.items],
                                 idempotency_key or None)  # an empty key is no key
    return FastJSON(await batch.place(db, settings.order_ttl_seconds, settings.batch_max,
                                      placing))


async def _create_order_fast(request: Request) -> Response | None:
    """`create_order` for a request that passes its dependencies and validation as
    they are declared (a JSON body that is an OrderIn, a well-formed bearer token, a
    tenant slug, a key of at most 128 characters); None for any other, whose error
    the declared path gives. What either path answers is compared in
    tests/api/test_fast_path.py."""
    headers = request.headers
    if headers.get("content-type") != "application/json":
        return None
    try:  # the dependencies' own rules; what they refuse, they refuse on the declared path
        tenant = slug_of(headers.get("x-tenant-id"))
        token = token_of(headers.get("authorization"))
    except (NotFound, Unauthorized):
        return None
    if token is None:  # the declared path answers 401 for a missing token
        return None
    key = headers.get("idempotency-key")
    if key is not None and len(key) > KEY_MAX_LENGTH:
        return None
    try:
        body = OrderIn.model_validate_json(await request.body())
    except ValidationError:
        return None
    return await _place(request, tenant, token, body, key)


# The order flood's route: FastAPI's handling (dependencies, parameters, body) is
# skipped for the requests that would pass it (api.lean.FastPathRoute).
router.add_api_route("/orders", create_order, methods=["POST"], response_model=OrderOut,
                     route_class_override=fast_path(_create_order_fast))


@router.get("/orders/{order_id}", response_model=OrderDetailOut)
def get_order(order_id: OrderId, db: DbDep, tenant: TenantDep, token: TokenDep) -> dict[str, Any]:
    """The caller's order, with its tickets."""
    with db.transaction(readonly=True) as session:
        caller = authenticate(session, tenant, token, None)
        return service.get_order(session, caller.tenant_id, order_id, owner_id=caller.user.id)


@router.post("/orders/{order_id}/pay", responses=error_responses(502))
def pay_order(order_id: OrderId, body: PayIn, db: DbDep, settings: SettingsDep,
              tenant: TenantDep, token: TokenDep) -> dict[str, Any]:
    """Start a payment through a gateway (payment_status becomes 1)."""
    return flows.start_payment(db, settings, tenant, token, order_id, body.gateway,
                               {"openid": body.payer_openid})


admin = APIRouter(prefix="/admin/tenants", tags=["operator"], dependencies=[Operator])


@admin.get("/{slug}/orders/{order_id}", response_model=OrderDetailOut)
def admin_get_order(slug: Slug, order_id: OrderId, db: DbDep) -> dict[str, Any]:
    """Any order of the tenant, with its tickets."""
    with db.transaction(readonly=True) as session:
        tenant = get_tenant(session, slug)
        return service.get_order(session, tenant.id, order_id)


@admin.post("/{slug}/orders/{order_id}/refund", responses=error_responses(502))
def admin_refund(slug: Slug, order_id: OrderId, db: DbDep, settings: SettingsDep) -> dict[str, Any]:
    """Refund the order's payment through its gateway (the mock refunds at once)."""
    return flows.refund_order(db, settings, slug, order_id)
