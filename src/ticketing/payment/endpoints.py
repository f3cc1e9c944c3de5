"""HTTP entry points for payment notifications."""

from __future__ import annotations

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ticketing.api.deps import DbDep, SettingsDep, TenantDep
from ticketing.kit.errors import error_responses
from ticketing.payment import batch, wechat_flow
from ticketing.payment.schemas import MockNotifyIn, NotifyOut

router = APIRouter(tags=["payments"])

_EXAMPLE = MockNotifyIn(order_id=1, gateway_txn_id="MOCK-0001", status="SUCCESS", amount=9900)


@router.post(
    "/payments/notify",
    response_model=NotifyOut,
    responses=error_responses(500),
    openapi_extra={"requestBody": {"content": {"application/json": {
        "schema": MockNotifyIn.model_json_schema(), "example": _EXAMPLE.model_dump()}},
        "required": True}},
)
async def mock_notify(request: Request, db: DbDep, settings: SettingsDep,
                      tenant: TenantDep) -> JSONResponse:
    """A mock-gateway payment notification; duplicates are answered as the first time."""
    raw = await request.body()
    result = await batch.notify_mock(db, settings.batch_max, tenant, raw, request.headers)
    return JSONResponse(result.body, status_code=result.http_status)



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
