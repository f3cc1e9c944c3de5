"""HTTP entry points for payment notifications."""

from __future__ import annotations

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ticketing.api.deps import DbDep, slug_of
from ticketing.api.express import ExpressRoute
from ticketing.api.lean import TENANT_HEADER, FastJSON
from ticketing.kit.errors import error_responses
from ticketing.payment import batch, wechat_flow
from ticketing.payment.schemas import MockNotifyIn, NotifyOut

router = APIRouter(tags=["payments"])

_EXAMPLE = MockNotifyIn(order_id=1, gateway_txn_id="MOCK-0001", status="SUCCESS", amount=9900)


async def mock_notify(request: Request) -> Response:
    """A mock-gateway payment notification; duplicates are answered as the first time."""
    tenant = slug_of(request.headers.get("x-tenant-id"))
    settings, db = request.app.state.settings, request.app.state.db
    raw = await request.body()
    result = await batch.notify_mock(db, settings.batch_max, tenant, raw, request.headers)
    return FastJSON(result.body, status_code=result.http_status)


# What a sale opening floods most: a LeanRoute in the express lane (api/express.py),
# documented as it would be with the `X-Tenant-ID` header as a parameter.
router.add_api_route(
    "/payments/notify", mock_notify, methods=["POST"], route_class_override=ExpressRoute,
    response_model=NotifyOut, responses=error_responses(500),
    openapi_extra={"parameters": [TENANT_HEADER], "requestBody": {"content": {
        "application/json": {"schema": MockNotifyIn.model_json_schema(),
                             "example": _EXAMPLE.model_dump()}}, "required": True}},
)


_WECHAT_FAIL = {"description": 'not handled; WeChat Pay sends it again: `{"code": "FAIL", '
                               '"message": ...}`',
                "content": {"application/json": {"example": {"code": "FAIL",
                                                             "message": "..."}}}}


@router.post(
    "/tenants/{slug}/payments/wechat/notify",
    status_code=204,
    response_class=Response,
    responses={204: {"description": "handled (also for duplicates); WeChat Pay stops sending"},
               **{s: _WECHAT_FAIL for s in (400, 401, 403, 404, 409, 500)}},
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": {
        "type": "object", "description": "WeChat Pay's envelope, with Wechatpay-* headers"}}},
        "required": True}},
)
async def wechat_notify(slug: str, request: Request, db: DbDep) -> Response:
    """A WeChat Pay API v3 notification for tenant `slug` (payments and refunds)."""
    structlog.contextvars.bind_contextvars(tenant=slug[:64])
    raw = await request.body()
    result = await run_in_threadpool(wechat_flow.notify_wechat, db, slug, raw, request.headers)
    status, body = wechat_flow.answer(result)
    if body is None:
        return Response(status_code=status)
    return JSONResponse(body, status_code=status)
