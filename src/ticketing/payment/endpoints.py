"""HTTP entry points for payment notifications."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ticketing.api.deps import DbDep, TenantDep
from ticketing.kit.errors import error_responses
from ticketing.payment import flows
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
async def mock_notify(request: Request, db: DbDep, tenant: TenantDep) -> JSONResponse:
    """A mock-gateway payment notification; duplicates are answered as the first time."""
    raw = await request.body()
    result = await run_in_threadpool(flows.notify_mock, db, tenant, raw, request.headers)
    return JSONResponse(result.body, status_code=result.http_status)

