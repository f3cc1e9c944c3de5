"""WeChat Pay API v3 cryptography: request signing, response and notification checks,
AEAD_AES_256_GCM resources and JSAPI pay parameters.

Pure functions over `cryptography`: no I/O, no clock, no module state. Error messages
never carry key material, signatures or decrypted payloads.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
ALGORITHM = "AEAD_AES_256_GCM"
PROBE_PREFIX = "WECHATPAY/SIGNTEST/"
PUBLIC_KEY_ID_PREFIX = "PUB_KEY_ID_"
MIN_RSA_BITS = 2048

HEADER_SERIAL = "Wechatpay-Serial"
HEADER_SIGNATURE = "Wechatpay-Signature"
HEADER_TIMESTAMP = "Wechatpay-Timestamp"
HEADER_NONCE = "Wechatpay-Nonce"
HEADER_SIGNATURE_TYPE = "Wechatpay-Signature-Type"
REQUIRED_HEADERS = (HEADER_SERIAL, HEADER_SIGNATURE, HEADER_TIMESTAMP, HEADER_NONCE)

AUTHORIZATION_FIELDS = ("mchid", "nonce_str", "signature", "timestamp", "serial_no")
_AUTH_PAIR = re.compile(r'\s*([a-z_]+)="([^"]*)"\s*(?:,|$)')
_MAX_TIMESTAMP_DIGITS = 12


class WechatCryptoError(Exception):
    """Base of this module's errors: a stable `reason_code` and a sentence for people."""

    def __init__(self, reason_code: str, message: str) -> None:
        super().__init__(f"{reason_code}: {message}")
        self.reason_code = reason_code
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason_code!r}, {self.message!r})"


class WechatVerificationError(WechatCryptoError):
    """A signature check failed: missing_header, bad_timestamp, signature_probe,
    unknown_serial, bad_signature_type, bad_signature or bad_authorization."""


class WechatDecryptError(WechatCryptoError):
    """A resource could not be opened: bad_algorithm, bad_key, decrypt_failed, bad_plaintext."""


# ---------------------------------------------------------------- keys and certificates


def _pem_bytes(pem: str | bytes, what: str) -> bytes:
    if isinstance(pem, str):
        pem = pem.encode("ascii", errors="replace")
    if not isinstance(pem, bytes) or not pem.strip():
        raise ValueError(f"{what}: empty or not text")
    return pem.strip()


def _require_rsa_public(key: Any, what: str) -> RSAPublicKey:
    if not isinstance(key, RSAPublicKey):
        raise ValueError(f"{what}: not an RSA key (WeChat Pay uses RSA-2048)")
    if key.key_size < MIN_RSA_BITS:
        raise ValueError(f"{what}: RSA key of {key.key_size} bits, at least {MIN_RSA_BITS} needed")
    return key


def load_public_key(pem: str | bytes) -> RSAPublicKey:
    """The RSA public key in a PEM `PUBLIC KEY` block (the WeChat Pay public key)."""
    data = _pem_bytes(pem, "WeChat Pay public key")
    if b"BEGIN CERTIFICATE" in data:
        raise ValueError("WeChat Pay public key: this is a certificate; "
                         "give it as a platform certificate instead")
    if b"PRIVATE KEY" in data:
        raise ValueError("WeChat Pay public key: this is a private key, never share it")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ValueError("WeChat Pay public key: not a valid PEM public key") from exc
    return _require_rsa_public(key, "WeChat Pay public key")


def load_private_key(pem: str | bytes) -> RSAPrivateKey:
    """The merchant's RSA private key from an unencrypted PEM (apiclient_key.pem)."""
    data = _pem_bytes(pem, "merchant private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError("merchant private key: not a valid unencrypted PEM private key") from exc
    if not isinstance(key, RSAPrivateKey) or key.key_size < MIN_RSA_BITS:
        raise ValueError(f"merchant private key: an RSA key of at least {MIN_RSA_BITS} bits needed")
    return key


def certificate_serial(cert: x509.Certificate) -> str:
    """A certificate's serial number as WeChat Pay writes it: upper-case hex."""
    return format(cert.serial_number, "X")


def load_certificate_key(pem: str | bytes, *, now: datetime | None = None
                         ) -> tuple[str, RSAPublicKey]:
    """(serial in upper-case hex, public key) of a platform certificate; when `now` is
    given, a certificate not valid at that moment is refused."""
    data = _pem_bytes(pem, "platform certificate")
    try:
        cert = x509.load_pem_x509_certificate(data)
    except (ValueError, TypeError) as exc:
        raise ValueError("platform certificate: not a valid PEM X.509 certificate") from exc
    key = _require_rsa_public(cert.public_key(), "platform certificate")
    serial = certificate_serial(cert)
    if now is not None:
        _require_aware(now)
        if now < cert.not_valid_before_utc:
            raise ValueError(f"platform certificate {serial}: not valid before "
                             f"{cert.not_valid_before_utc.isoformat()}")
        if now > cert.not_valid_after_utc:
            raise ValueError(f"platform certificate {serial}: expired on "
                             f"{cert.not_valid_after_utc.isoformat()}")
    return serial, key


def certificate_not_after(pem: str | bytes) -> datetime:
    """When a platform certificate expires (aware UTC)."""
    data = _pem_bytes(pem, "platform certificate")
    try:
        return x509.load_pem_x509_certificate(data).not_valid_after_utc
    except (ValueError, TypeError) as exc:
        raise ValueError("platform certificate: not a valid PEM X.509 certificate") from exc


# ---------------------------------------------------------------- signing


def _to_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


def signed_message(timestamp: int | str, nonce: str, body: str | bytes) -> bytes:
    """What WeChat Pay signs on a response or notification: `ts\\nnonce\\nbody\\n`."""
    return f"{timestamp}\n{nonce}\n".encode() + _to_bytes(body) + b"\n"


def _sign(private_key: RSAPrivateKey, message: bytes) -> str:
    if not isinstance(private_key, RSAPrivateKey):
        raise TypeError("an RSA private key is needed to sign")
    raw = private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(raw).decode("ascii")


def _verify(public_key: RSAPublicKey, signature_b64: str, message: bytes) -> bool:
    try:
        raw = base64.b64decode(signature_b64.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        public_key.verify(raw, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def sign_message(private_key: RSAPrivateKey, message: str | bytes) -> str:
    """Base64 SHA256withRSA (PKCS#1 v1.5) signature of `message`."""
    return _sign(private_key, _to_bytes(message))


def sign_response(private_key: RSAPrivateKey, timestamp: int | str, nonce: str,
                  body: str | bytes) -> str:
    """The Wechatpay-Signature WeChat Pay puts on a response or notification."""
    return _sign(private_key, signed_message(timestamp, nonce, body))


# ---------------------------------------------------------------- verifying WeChat Pay


def _require_aware(now: datetime) -> None:
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise TypeError("`now` must be a timezone-aware datetime")


def _header_lookup(headers: Mapping[str, str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in headers.items():
        key = str(name).lower()
        value = str(value).strip()
        if key in found and found[key] != value:
            raise WechatVerificationError("missing_header", f"header {name} given twice")
        found[key] = value
    return found


def _parse_timestamp(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit() and len(raw) <= _MAX_TIMESTAMP_DIGITS):
        raise WechatVerificationError("bad_timestamp", "timestamp is not an integer of seconds")
    return int(raw)


def _check_skew(timestamp: int, now: datetime, max_skew_seconds: int) -> None:
    skew = timestamp - now.timestamp()
    if abs(skew) > max_skew_seconds:
        raise WechatVerificationError(
            "bad_timestamp", f"timestamp is {int(skew)} s from now (at most {max_skew_seconds})")


def _find_key(keys: Mapping[str, RSAPublicKey], serial: str) -> RSAPublicKey:
    key = keys.get(serial)
    if key is None:
        wanted = serial.upper()
        key = next((k for s, k in keys.items() if s.upper() == wanted), None)
    if key is None:
        raise WechatVerificationError("unknown_serial", f"no key configured for serial {serial}")
    if not isinstance(key, RSAPublicKey):
        raise TypeError(f"key for serial {serial} is not an RSA public key")
    return key


def verify_notification(headers: Mapping[str, str], body: bytes,
                        keys: Mapping[str, RSAPublicKey], now: datetime,
                        max_skew_seconds: int = 300) -> None:
    """Check a notification's (or response's) Wechatpay-* headers against its raw body.

    Checks run in this order: missing_header, bad_signature_type, signature_probe,
    bad_timestamp, unknown_serial, bad_signature.
    """
    _require_aware(now)
    found = _header_lookup(headers)
    for name in REQUIRED_HEADERS:
        if not found.get(name.lower()):
            raise WechatVerificationError("missing_header", f"header {name} is missing")
    sig_type = found.get(HEADER_SIGNATURE_TYPE.lower())
    if sig_type is not None and sig_type != SIGNATURE_TYPE:
        raise WechatVerificationError("bad_signature_type",
                                      f"signature type must be {SIGNATURE_TYPE}")
    signature = found[HEADER_SIGNATURE.lower()]
    if signature.startswith(PROBE_PREFIX):
        raise WechatVerificationError("signature_probe",
                                      "WeChat Pay signature probe: refused on purpose")
    raw_ts = found[HEADER_TIMESTAMP.lower()]
    _check_skew(_parse_timestamp(raw_ts), now, max_skew_seconds)
    key = _find_key(keys, found[HEADER_SERIAL.lower()])
    message = signed_message(raw_ts, found[HEADER_NONCE.lower()], body)
    if not _verify(key, signature, message):
        raise WechatVerificationError("bad_signature", "signature does not match the body")


def verify_response(headers: Mapping[str, str], body: bytes,
                    keys: Mapping[str, RSAPublicKey], now: datetime,
                    max_skew_seconds: int = 300) -> None:
    """Check the signature WeChat Pay puts on an API response (same rules as notifications)."""
    verify_notification(headers, body, keys, now, max_skew_seconds)


# ---------------------------------------------------------------- Authorization header


def _request_message(method: str, url: str, timestamp: int | str, nonce: str,
                     body: str | bytes) -> bytes:
    return f"{method.upper()}\n{url}\n{timestamp}\n{nonce}\n".encode() + _to_bytes(body) + b"\n"


def build_authorization(mchid: str, serial_no: str, private_key: RSAPrivateKey, method: str,
                        url_path_with_query: str, body: str, timestamp: int,
                        nonce: str) -> str:
    """The Authorization header for a merchant request to the WeChat Pay API."""
    for name, value in (("mchid", mchid), ("serial_no", serial_no), ("nonce", nonce)):
        if not value or '"' in value or "," in value:
            raise ValueError(f"{name} must be non-empty and free of quotes and commas")
    signature = _sign(private_key, _request_message(method, url_path_with_query, timestamp,
                                                    nonce, body))
    return (f'{SIGNATURE_TYPE} mchid="{mchid}",nonce_str="{nonce}",signature="{signature}",'
            f'timestamp="{timestamp}",serial_no="{serial_no}"')


def parse_authorization(header: str) -> dict[str, str]:
    """The fields of a WECHATPAY2-SHA256-RSA2048 Authorization header."""
    if not header or not header.strip():
        raise WechatVerificationError("missing_header", "Authorization header is missing")
    schema, _, rest = header.strip().partition(" ")
    if schema != SIGNATURE_TYPE:
        raise WechatVerificationError("bad_signature_type",
                                      f"authorization schema must be {SIGNATURE_TYPE}")
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        match = _AUTH_PAIR.match(rest, pos)
        if match is None or match.end() == pos:
            raise WechatVerificationError("bad_authorization", "malformed Authorization header")
        name, value = match.group(1), match.group(2)
        if name in fields:
            raise WechatVerificationError("bad_authorization", f"{name} given twice")
        fields[name] = value
        pos = match.end()
    missing = [name for name in AUTHORIZATION_FIELDS if not fields.get(name)]
    if missing:
        raise WechatVerificationError("bad_authorization", f"missing {', '.join(missing)}")
    return fields


def verify_authorization(header: str, public_key: RSAPublicKey, method: str, url: str,
                         body: str | bytes, *, now: datetime | None = None,
                         max_skew_seconds: int = 300) -> dict[str, str]:
    """Check a merchant request's Authorization header; returns its parsed fields."""
    fields = parse_authorization(header)
    timestamp = _parse_timestamp(fields["timestamp"])
    if now is not None:
        _require_aware(now)
        _check_skew(timestamp, now, max_skew_seconds)
    message = _request_message(method, url, fields["timestamp"], fields["nonce_str"], body)
    if not _verify(public_key, fields["signature"], message):
        raise WechatVerificationError("bad_signature", "request signature does not match")
    return fields


# ---------------------------------------------------------------- JSAPI / mini-program


def jsapi_pay_params(appid: str, prepay_id: str, private_key: RSAPrivateKey, timestamp: int,
                     nonce: str) -> dict[str, str]:
    """What wx.requestPayment / WeixinJSBridge needs to pay a prepay order."""
    package = f"prepay_id={prepay_id}"
    message = f"{appid}\n{timestamp}\n{nonce}\n{package}\n"
    return {"appId": appid, "timeStamp": str(timestamp), "nonceStr": nonce, "package": package,
            "signType": "RSA", "paySign": sign_message(private_key, message)}


def verify_jsapi_pay_params(params: Mapping[str, str], public_key: RSAPublicKey) -> bool:
    """Whether `paySign` in JSAPI pay parameters verifies under the merchant public key."""
    message = (f"{params['appId']}\n{params['timeStamp']}\n{params['nonceStr']}\n"
               f"{params['package']}\n")
    return params.get("signType") == "RSA" and _verify(public_key, params["paySign"],
                                                       message.encode())


# ---------------------------------------------------------------- encrypted resources


def _aesgcm(apiv3_key: bytes | str) -> AESGCM:
    key = apiv3_key.encode("utf-8") if isinstance(apiv3_key, str) else apiv3_key
    if not isinstance(key, bytes | bytearray) or len(key) != 32:
        raise WechatDecryptError("bad_key", "the APIv3 key must be exactly 32 bytes")
    return AESGCM(bytes(key))


def _text_field(resource: Mapping[str, Any], name: str, required: bool) -> bytes:
    value = resource.get(name)
    if value is None and not required:
        return b""
    if not isinstance(value, str) or (required and not value):
        raise WechatDecryptError("decrypt_failed", f"resource {name} is missing or not text")
    return value.encode("utf-8")


def decrypt_resource(resource: Mapping[str, Any], apiv3_key: bytes | str) -> dict[str, Any]:
    """The JSON object inside a notification's AEAD_AES_256_GCM `resource`."""
    if not isinstance(resource, Mapping):
        raise WechatDecryptError("decrypt_failed", "resource is not an object")
    if resource.get("algorithm") != ALGORITHM:
        raise WechatDecryptError("bad_algorithm", f"resource algorithm must be {ALGORITHM}")
    aead = _aesgcm(apiv3_key)
    nonce = _text_field(resource, "nonce", required=True)
    aad = _text_field(resource, "associated_data", required=False)
    try:
        ciphertext = base64.b64decode(_text_field(resource, "ciphertext", True), validate=True)
        plaintext = aead.decrypt(nonce, ciphertext, aad or None)
    except (binascii.Error, ValueError, InvalidTag) as exc:
        raise WechatDecryptError(
            "decrypt_failed", "resource does not decrypt (wrong APIv3 key, data or nonce)") from exc
    try:
        value = json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise WechatDecryptError("bad_plaintext", "decrypted resource is not JSON") from exc
    if not isinstance(value, dict):
        raise WechatDecryptError("bad_plaintext", "decrypted resource is not a JSON object")
    return value


def encrypt_resource(plain: Mapping[str, Any], apiv3_key: bytes | str, *, nonce: str,
                     associated_data: str, original_type: str) -> dict[str, str]:
    """A `resource` object as WeChat Pay sends it, sealing `plain` under the APIv3 key."""
    aead = _aesgcm(apiv3_key)
    data = json.dumps(plain, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    sealed = aead.encrypt(nonce.encode("utf-8"), data, associated_data.encode("utf-8") or None)
    return {"original_type": original_type, "algorithm": ALGORITHM,
            "ciphertext": base64.b64encode(sealed).decode("ascii"),
            "associated_data": associated_data, "nonce": nonce}
