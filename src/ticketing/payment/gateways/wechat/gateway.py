"""The WeChat Pay API v3 adapter: JSAPI / mini-program prepay orders and refunds.

Requests are signed with the tenant's merchant private key; answers are accepted only
when WeChat Pay's signature on them verifies under the tenant's WeChat Pay keys.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog

from ticketing import __version__
from ticketing.kit.clock import utcnow
from ticketing.kit.errors import Conflict, GatewayError, Invalid
from ticketing.models import GatewayConfig
from ticketing.payment.gateways.base import OrderSnapshot, RefundRequest, RefundResult
from ticketing.payment.gateways.wechat import crypto
from ticketing.payment.gateways.wechat.config import NAME, WechatConfig
from ticketing.settings import Settings

TIMEOUT_SECONDS = 5.0
JSAPI_PATH = "/v3/pay/transactions/jsapi"
REFUND_PATH = "/v3/refund/domestic/refunds"
REFUND_STATUSES = ("SUCCESS", "PROCESSING", "ABNORMAL", "CLOSED")
log = structlog.get_logger(component="wechat")


def notify_url(settings: Settings, tenant_slug: str) -> str:
    """Where WeChat Pay sends this tenant's notifications (the tenant is in the path)."""
    return f"{settings.public_base_url.rstrip('/')}/tenants/{tenant_slug}/payments/wechat/notify"


class WechatGateway:
    """WeChat Pay for one tenant (direct merchant mode)."""

    name = NAME

    def __init__(self, config: WechatConfig, settings: Settings) -> None:
        self._config = config
        self._settings = settings

    def start_payment(self, order: OrderSnapshot, payer: dict[str, Any]) -> dict[str, Any]:
        """Place a JSAPI prepay order; the signed parameters wx.requestPayment needs."""
        openid = payer.get("openid")
        if not openid:
            raise Invalid("payer_openid is required to pay with WeChat Pay",
                          code="payer_openid_required")
        self._direct_mode_only()
        cfg = self._config
        answer = self._post(JSAPI_PATH, {
            "appid": cfg.appid, "mchid": cfg.mchid, "description": order.description or "order",
            "out_trade_no": order.out_trade_no,
            "notify_url": notify_url(self._settings, order.tenant_slug),
            "amount": {"total": order.total_amount, "currency": order.currency},
            "payer": {"openid": openid},
        }, order.tenant_id, order.order_id)
        prepay_id = answer.get("prepay_id")
        if not isinstance(prepay_id, str) or not prepay_id:
            raise GatewayError("WeChat Pay answered without a prepay_id", code="gateway_error")
        params = crypto.jsapi_pay_params(cfg.appid, prepay_id, cfg.signing_key(),
                                         int(time.time()), secrets.token_hex(16).upper())
        return {"wechat": params}

    def refund(self, request: RefundRequest) -> RefundResult:
        """Ask WeChat Pay to refund; it usually answers PROCESSING, then notifies."""
        self._direct_mode_only()
        order = request.order
        body: dict[str, Any] = {
            "out_refund_no": request.out_refund_no,
            "notify_url": notify_url(self._settings, order.tenant_slug),
            "amount": {"refund": request.amount, "total": order.total_amount,
                       "currency": order.currency},
        }
        if request.gateway_txn_id and ":" not in request.gateway_txn_id:
            body["transaction_id"] = request.gateway_txn_id
        else:  # a payment known only by the order number (no WeChat transaction id)
            body["out_trade_no"] = order.out_trade_no
        answer = self._post(REFUND_PATH, body, order.tenant_id, order.order_id)
        status = answer.get("status")
        return RefundResult(status=status if status in REFUND_STATUSES else "PROCESSING",
                            gateway_refund_id=answer.get("refund_id"),
                            detail={"status": status, "channel": answer.get("channel")})

    def _direct_mode_only(self) -> None:
        if self._config.sp_mchid:
            raise Conflict("Outgoing WeChat Pay calls in service-provider mode are not supported",
                           code="wechat_partner_mode_unsupported")

    def _post(self, path: str, payload: dict[str, Any], tenant_id: int, order_id: int
              ) -> dict[str, Any]:
        """POST a signed request; the answer once its WeChat Pay signature verifies."""
        cfg = self._config
        url = self._settings.wechat_api_base.rstrip("/") + path
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        headers = {"Authorization": crypto.build_authorization(
                       cfg.mchid, cfg.merchant_serial_no or "", cfg.signing_key(), "POST",
                       urlsplit(url).path, body, int(time.time()), secrets.token_hex(16)),
                   "Content-Type": "application/json", "Accept": "application/json",
                   "User-Agent": f"ticketing/{__version__}"}
        serial = cfg.wechat_serial()
        if serial:
            headers["Wechatpay-Serial"] = serial
        bound = log.bind(tenant_id=tenant_id, order_id=order_id, path=path)
        try:
            with httpx.Client(timeout=TIMEOUT_SECONDS) as client:
                response = client.post(url, content=body.encode("utf-8"), headers=headers)
        except httpx.HTTPError as exc:
            bound.warning("wechat.request_failed", error=type(exc).__name__)
            raise GatewayError("WeChat Pay could not be reached", code="gateway_unreachable") from exc
        bound.info("wechat.answered", status=response.status_code,
                   request_id=response.headers.get("Request-ID"))
        if response.status_code >= 300:
            raise _refused(response)
        now = utcnow()
        try:
            crypto.verify_response(response.headers, response.content,
                                   cfg.verification_keys(now), now)
        except crypto.WechatVerificationError as exc:
            bound.warning("wechat.answer_unverified", reason=exc.reason_code)
            raise GatewayError(f"WeChat Pay answer failed its signature check ({exc.reason_code})",
                               code="gateway_bad_signature") from exc
        try:
            answer = response.json()
        except ValueError as exc:
            raise GatewayError("WeChat Pay answered with no JSON", code="gateway_error") from exc
        if not isinstance(answer, dict):
            raise GatewayError("WeChat Pay answered with no JSON object", code="gateway_error")
        return answer


def _refused(response: httpx.Response) -> GatewayError:
    """WeChat Pay's own code and message (they never carry our secrets)."""
    try:
        data = response.json()
    except ValueError:
        data = {}
    data = data if isinstance(data, dict) else {}
    code = str(data.get("code") or f"HTTP_{response.status_code}")[:64]
    message = str(data.get("message") or "no message")[:200]
    return GatewayError(f"WeChat Pay refused: {code}: {message}", code="gateway_error",
                        gateway_code=code, gateway_status=response.status_code)


def build(row: GatewayConfig | None, settings: Settings) -> WechatGateway:
    """The tenant's WeChat Pay adapter; 409 when the tenant has not configured it."""
    if row is None or not (row.secrets or {}).get("apiv3_key"):
        raise Conflict("WeChat Pay is not configured for this tenant",
                       code="gateway_not_configured")
    return WechatGateway(WechatConfig.from_row(row), settings)
