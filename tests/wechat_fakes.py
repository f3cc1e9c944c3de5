"""A fake WeChat Pay (API v3) for tests: keys, notifications and a local HTTP server.

`WechatPayFake` plays WeChat Pay: it signs notifications and responses with its own
(platform / public-key) private keys and checks the merchant's request signatures with
the merchant public key. `serve_fake(fake)` serves it on 127.0.0.1 for the service's
outgoing calls. All keys are RSA-2048, generated at run time and cached per name.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from ticketing.payment.gateways.wechat import crypto

CHINA = timezone(timedelta(hours=8))
_KEYS: dict[str, rsa.RSAPrivateKey] = {}
_KEYS_LOCK = threading.Lock()
TAMPERS = ("body", "signature", "wrong_signer", "ciphertext", "aad", "apiv3_key", "probe",
           "signature_type")


def make_rsa_keypair(name: str = "default") -> rsa.RSAPrivateKey:
    """An RSA-2048 private key, generated once per `name` for the whole test run."""
    with _KEYS_LOCK:
        if name not in _KEYS:
            _KEYS[name] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return _KEYS[name]


def private_key_pem(key: rsa.RSAPrivateKey) -> str:
    """Unencrypted PKCS#8 PEM of a private key (like apiclient_key.pem)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode("ascii")


def public_key_pem(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    """SubjectPublicKeyInfo PEM of a key's public half (like pub_key.pem)."""
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return public.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def make_platform_certificate(private_key: rsa.RSAPrivateKey, serial_hex: str, *,
                              not_before: datetime | None = None,
                              not_after: datetime | None = None) -> str:
    """A self-signed X.509 'WeChat Pay platform certificate' PEM with this serial."""
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tenpay.com"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA (test)")])
    start = not_before or datetime.now(UTC) - timedelta(days=1)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(private_key.public_key()).serial_number(int(serial_hex, 16))
            .not_valid_before(start).not_valid_after(not_after or start + timedelta(days=1825))
            .sign(private_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def rfc3339_china(when: datetime | None = None) -> str:
    """A time as WeChat Pay writes it: RFC 3339 at +08:00, whole seconds."""
    return (when or datetime.now(UTC)).astimezone(CHINA).isoformat(timespec="seconds")


def _nonce(length: int = 32) -> str:
    return secrets.token_hex(length // 2).upper()


@dataclass(eq=False)
class WechatPayFake:
    """Plays WeChat Pay for one merchant; secrets stay out of its repr."""

    mchid: str = "1900000109"
    appid: str = "wxd678efh567hg6787"
    apiv3_key: bytes = field(default_factory=lambda: secrets.token_hex(16).encode(), repr=False)
    public_key_id: str = "PUB_KEY_ID_0114232134912410000000000000"
    wechat_key: rsa.RSAPrivateKey = field(
        default_factory=lambda: make_rsa_keypair("wechat-public-key"), repr=False)
    platform_serial: str | None = None
    platform_key: rsa.RSAPrivateKey | None = field(default=None, repr=False)
    merchant_serial: str = "3775B6A45ACD588826D15E583A95F5DD2C6ECA2C"
    merchant_key: rsa.RSAPrivateKey = field(
        default_factory=lambda: make_rsa_keypair("merchant"), repr=False)
    clock: Callable[[], float] = field(default=time.time, repr=False)
    requests: list[dict[str, Any]] = field(default_factory=list, repr=False)
    forced_responses: deque = field(default_factory=deque, repr=False)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    platform_certificate_pem: str | None = field(default=None, repr=False)
    base_url: str | None = None
    # the serial API answers are signed under (None: the public key id)
    response_serial: str | None = None

    def __post_init__(self) -> None:
        if self.platform_key is not None and self.platform_serial and not \
                self.platform_certificate_pem:
            self.platform_certificate_pem = make_platform_certificate(self.platform_key,
                                                                      self.platform_serial)

    @classmethod
    def with_certificate(cls, serial: str = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1",
                         **kwargs: Any) -> WechatPayFake:
        """A fake that also has a platform certificate (a second, distinct key)."""
        return cls(platform_serial=serial, platform_key=make_rsa_keypair("wechat-platform-cert"),
                   **kwargs)

    # ------------------------------------------------------------ keys as the service sees them

    @property
    def public_key_pem(self) -> str:
        """The WeChat Pay public key (pub_key.pem) for `public_key_id`."""
        return public_key_pem(self.wechat_key)

    @property
    def merchant_private_key_pem(self) -> str:
        """The merchant API private key the service signs its requests with."""
        return private_key_pem(self.merchant_key)

    def verification_keys(self) -> dict[str, rsa.RSAPublicKey]:
        """serial → public key, every key this fake may sign with."""
        keys = {self.public_key_id: self.wechat_key.public_key()}
        if self.platform_key is not None and self.platform_serial:
            keys[self.platform_serial] = self.platform_key.public_key()
        return keys

    def gateway_config(self, *, public_key: bool = True, certificate: bool = True
                       ) -> dict[str, Any]:
        """The body of `PUT /admin/tenants/{slug}/gateways/wechat` for this merchant."""
        config: dict[str, Any] = {"mchid": self.mchid, "appid": self.appid,
                                  "apiv3_key": self.apiv3_key.decode("ascii"),
                                  "merchant_serial_no": self.merchant_serial,
                                  "merchant_private_key_pem": self.merchant_private_key_pem}
        if public_key:
            config.update(public_key_id=self.public_key_id, public_key_pem=self.public_key_pem)
        if certificate and self.platform_certificate_pem:
            config["platform_certificates"] = [{"serial_no": self.platform_serial,
                                                "pem": self.platform_certificate_pem}]
        return config

    def _signer(self, serial: str) -> rsa.RSAPrivateKey:
        if self.platform_key is not None and serial == self.platform_serial:
            return self.platform_key
        return self.wechat_key

    def signed_headers(self, body: bytes, *, serial: str | None = None,
                       timestamp: int | None = None, nonce: str | None = None
                       ) -> dict[str, str]:
        """Wechatpay-* headers signing `body`, as on a response or notification."""
        serial = serial or self.public_key_id
        timestamp = int(self.clock()) if timestamp is None else timestamp
        nonce = nonce or _nonce()
        return {"Wechatpay-Serial": serial, "Wechatpay-Timestamp": str(timestamp),
                "Wechatpay-Nonce": nonce, "Wechatpay-Signature-Type": crypto.SIGNATURE_TYPE,
                "Wechatpay-Signature": crypto.sign_response(self._signer(serial), timestamp,
                                                            nonce, body)}

    # ------------------------------------------------------------ notifications

    def transaction_resource(self, out_trade_no: str, transaction_id: str | None, total: int,
                             trade_state: str = "SUCCESS", success_time: str | None = None,
                             payer_openid: str = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
                             **extra: Any) -> dict[str, Any]:
        """A decrypted `transaction` resource, with the real v3 field names."""
        resource: dict[str, Any] = {
            "mchid": self.mchid, "appid": self.appid, "out_trade_no": out_trade_no,
            "transaction_id": transaction_id, "trade_type": "JSAPI", "trade_state": trade_state,
            "trade_state_desc": _TRADE_STATE_DESC.get(trade_state, trade_state),
            "bank_type": "OTHERS", "attach": "", "payer": {"openid": payer_openid},
            "amount": {"total": total, "payer_total": total, "currency": "CNY",
                       "payer_currency": "CNY"}}
        if trade_state == "SUCCESS":
            resource["success_time"] = success_time or rfc3339_china()
        elif success_time:
            resource["success_time"] = success_time
        if transaction_id is None:
            del resource["transaction_id"]
        resource.update(extra)
        return resource

    def refund_resource(self, out_trade_no: str, out_refund_no: str, refund_id: str,
                        refund_status: str, total: int, refund: int, *,
                        transaction_id: str | None = None, success_time: str | None = None,
                        user_received_account: str = "支付用户零钱") -> dict[str, Any]:
        """A decrypted `refund` resource, with the real v3 field names."""
        resource: dict[str, Any] = {
            "mchid": self.mchid, "out_trade_no": out_trade_no,
            "transaction_id": transaction_id or new_transaction_id(),
            "out_refund_no": out_refund_no, "refund_id": refund_id,
            "refund_status": refund_status, "user_received_account": user_received_account,
            "amount": {"total": total, "refund": refund, "payer_total": total,
                       "payer_refund": refund}}
        if refund_status == "SUCCESS":
            resource["success_time"] = success_time or rfc3339_china()
        return resource

    def notification(self, event_type: str, resource_plain: dict[str, Any], *,
                     serial: str | None = None, timestamp: int | None = None,
                     nonce: str | None = None, tamper: str | None = None
                     ) -> tuple[dict[str, str], bytes]:
        """(headers, raw body) exactly as WeChat Pay POSTs a notification.

        `tamper`: one of TAMPERS, to produce what a forger or a broken proxy would send.
        """
        if tamper is not None and tamper not in TAMPERS:
            raise ValueError(f"tamper must be one of {TAMPERS}")
        original_type = "refund" if event_type.startswith("REFUND.") else "transaction"
        key = b"0" * 32 if tamper == "apiv3_key" else self.apiv3_key
        resource = crypto.encrypt_resource(resource_plain, key, nonce=_nonce(12),
                                           associated_data=original_type,
                                           original_type=original_type)
        if tamper == "ciphertext":
            raw = bytearray(base64.b64decode(resource["ciphertext"]))
            raw[0] ^= 0x01
            resource["ciphertext"] = base64.b64encode(bytes(raw)).decode("ascii")
        if tamper == "aad":
            resource["associated_data"] = "certificate"
        envelope = {"id": str(uuid.uuid4()), "create_time": rfc3339_china(),
                    "resource_type": "encrypt-resource", "event_type": event_type,
                    "summary": _SUMMARY.get(event_type, event_type), "resource": resource}
        body = json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = self.signed_headers(body, serial=serial, timestamp=timestamp, nonce=nonce)
        headers["Content-Type"] = "application/json"
        return self._tamper(tamper, headers, body)

    def _tamper(self, tamper: str | None, headers: dict[str, str], body: bytes
                ) -> tuple[dict[str, str], bytes]:
        if tamper == "body":
            body = body.replace(b'"event_type":"', b'"event_type":"X', 1)
        elif tamper == "signature":
            sig = bytearray(base64.b64decode(headers["Wechatpay-Signature"]))
            sig[-1] ^= 0x01
            headers["Wechatpay-Signature"] = base64.b64encode(bytes(sig)).decode("ascii")
        elif tamper == "wrong_signer":
            headers["Wechatpay-Signature"] = crypto.sign_response(
                make_rsa_keypair("impostor"), headers["Wechatpay-Timestamp"],
                headers["Wechatpay-Nonce"], body)
        elif tamper == "probe":
            headers["Wechatpay-Signature"] = crypto.PROBE_PREFIX + _nonce(32)
        elif tamper == "signature_type":
            headers["Wechatpay-Signature-Type"] = "WECHATPAY2-SHA256-SM2"
        return headers, body

    # ------------------------------------------------------------ the API, for the HTTP server

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes
               ) -> tuple[int, dict[str, Any]]:
        """(status, JSON answer) for one API request; records it in `requests`."""
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        self.requests.append({"method": method, "path": path, "headers": headers,
                              "json": parsed, "body": body.decode("utf-8", "replace")})
        if self.forced_responses:
            return self.forced_responses.popleft()
        route = _ROUTES.get((method, path.split("?", 1)[0]))
        if route is None:
            return 404, {"code": "NOT_FOUND", "message": f"no such API: {method} {path}"}
        problem = self._check_authorization(method, path, headers, body)
        if problem:
            return 401, {"code": "SIGN_ERROR", "message": problem}
        if not isinstance(parsed, dict):
            return 400, {"code": "PARAM_ERROR", "message": "body is not a JSON object"}
        return route(self, parsed)

    def _check_authorization(self, method: str, path: str, headers: dict[str, str],
                             body: bytes) -> str | None:
        header = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        try:
            fields = crypto.verify_authorization(
                header, self.merchant_key.public_key(), method, path, body,
                now=datetime.fromtimestamp(self.clock(), UTC))
        except crypto.WechatVerificationError as exc:
            return f"signature check failed ({exc.reason_code})"
        if fields["mchid"] != self.mchid:
            return "mchid in Authorization is not this merchant"
        if fields["serial_no"] != self.merchant_serial:
            return "serial_no in Authorization is not the merchant certificate serial"
        return None

    def _jsapi(self, req: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        missing = _missing(req, "appid", "mchid", "description", "out_trade_no", "notify_url",
                           "amount.total", "payer.openid")
        if missing:
            return 400, {"code": "PARAM_ERROR", "message": f"missing {', '.join(missing)}"}
        if req["mchid"] != self.mchid or req["appid"] != self.appid:
            return 400, {"code": "PARAM_ERROR", "message": "appid and mchid do not match"}
        amount = req["amount"]
        if not _positive_int(amount["total"]) or amount.get("currency", "CNY") != "CNY":
            return 400, {"code": "PARAM_ERROR", "message": "amount.total must be fen in CNY"}
        known = self.orders.get(req["out_trade_no"])
        if known is not None and known["request"] != req:
            return 400, {"code": "INVALID_REQUEST", "message": "out_trade_no reused"}
        if known is None:
            known = {"request": req, "prepay_id": "wx" + _nonce(32).lower()}
            self.orders[req["out_trade_no"]] = known
        return 200, {"prepay_id": known["prepay_id"]}

    def _refund(self, req: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        missing = _missing(req, "out_refund_no", "amount.refund", "amount.total",
                           "amount.currency")
        if not (req.get("out_trade_no") or req.get("transaction_id")):
            missing.append("out_trade_no or transaction_id")
        if missing:
            return 400, {"code": "PARAM_ERROR", "message": f"missing {', '.join(missing)}"}
        amount = req["amount"]
        if not (_positive_int(amount["refund"]) and _positive_int(amount["total"])
                and amount["refund"] <= amount["total"] and amount["currency"] == "CNY"):
            return 400, {"code": "PARAM_ERROR", "message": "bad refund amount"}
        known = self.refunds.get(req["out_refund_no"])
        if known is None:
            known = {"request": req, "refund_id": "50" + _digits(28),
                     "create_time": rfc3339_china()}
            self.refunds[req["out_refund_no"]] = known
        return 200, {"refund_id": known["refund_id"], "out_refund_no": req["out_refund_no"],
                     "transaction_id": req.get("transaction_id") or new_transaction_id(),
                     "out_trade_no": req.get("out_trade_no", ""), "channel": "ORIGINAL",
                     "user_received_account": "支付用户零钱", "status": "PROCESSING",
                     "create_time": known["create_time"],
                     "amount": {"total": amount["total"], "refund": amount["refund"],
                                "payer_total": amount["total"], "payer_refund": amount["refund"],
                                "currency": "CNY"}}


_TRADE_STATE_DESC = {"SUCCESS": "支付成功", "NOTPAY": "未支付", "CLOSED": "已关闭",
                     "PAYERROR": "支付失败", "REVOKED": "已撤销", "USERPAYING": "用户支付中",
                     "REFUND": "转入退款"}
_SUMMARY = {"TRANSACTION.SUCCESS": "支付成功", "REFUND.SUCCESS": "退款成功",
            "REFUND.ABNORMAL": "退款异常", "REFUND.CLOSED": "退款关闭"}
_ROUTES: dict[tuple[str, str], Callable[..., tuple[int, dict[str, Any]]]] = {
    ("POST", "/v3/pay/transactions/jsapi"): WechatPayFake._jsapi,
    ("POST", "/v3/refund/domestic/refunds"): WechatPayFake._refund,
}


def new_transaction_id() -> str:
    """A WeChat Pay style transaction id (28 digits)."""
    return "4200" + _digits(24)


def _digits(count: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(count))


def _missing(req: dict[str, Any], *paths: str) -> list[str]:
    missing = []
    for path in paths:
        value: Any = req
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value in (None, ""):
            missing.append(path)
    return missing


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


class _Handler(BaseHTTPRequestHandler):
    fake: WechatPayFake
    lock: threading.Lock
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self._serve()

    def do_GET(self) -> None:  # noqa: N802
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with self.lock:
            status, answer = self.fake.handle(self.command, self.path, dict(self.headers.items()),
                                              body)
        raw = json.dumps(answer, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("Request-ID", _nonce(16))
        for name, value in self.fake.signed_headers(raw, serial=self.fake.response_serial).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        return


@contextmanager
def serve_fake(fake: WechatPayFake) -> Iterator[str]:
    """Serve `fake` on 127.0.0.1 (a free port) in a thread; yields its base URL."""
    handler = type("FakeWechatHandler", (_Handler,), {"fake": fake, "lock": threading.Lock()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="wechat-fake", daemon=True)
    thread.start()
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake.base_url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        fake.base_url = None
