"""A tenant's WeChat Pay settings: validated on the way in, keys built on the way out.

Stored in `GatewayConfig`: identifiers and public material in `.config`, the APIv3 key
and the merchant private key in `.secrets`. Nothing here returns or logs a secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from ticketing.kit.clock import rfc3339
from ticketing.kit.errors import Conflict, Invalid
from ticketing.models import GatewayConfig
from ticketing.payment.gateways.wechat import crypto

NAME = "wechat"
log = structlog.get_logger(component="wechat")


@dataclass(frozen=True)
class WechatConfig:
    """One tenant's WeChat Pay merchant: ids, WeChat's keys, and its own secrets."""

    mchid: str
    appid: str
    apiv3_key: str = field(repr=False)
    public_key_id: str | None = None
    public_key_pem: str | None = field(default=None, repr=False)
    merchant_serial_no: str | None = None
    merchant_private_key_pem: str | None = field(default=None, repr=False)
    platform_certificates: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    sp_mchid: str | None = None
    sub_mchid: str | None = None

    @classmethod
    def from_row(cls, row: GatewayConfig) -> WechatConfig:
        """The settings stored for a tenant."""
        config, secrets_ = row.config or {}, row.secrets or {}
        certs = tuple((c["serial_no"], c["pem"]) for c in config.get("platform_certificates", ()))
        return cls(mchid=config["mchid"], appid=config["appid"], apiv3_key=secrets_["apiv3_key"],
                   public_key_id=config.get("public_key_id"),
                   public_key_pem=config.get("public_key_pem"),
                   merchant_serial_no=config.get("merchant_serial_no"),
                   merchant_private_key_pem=secrets_.get("merchant_private_key_pem"),
                   platform_certificates=certs, sp_mchid=config.get("sp_mchid"),
                   sub_mchid=config.get("sub_mchid"))

    def to_row(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(config, secrets) as `set_gateway_config` stores them."""
        config = {"mchid": self.mchid, "appid": self.appid, "public_key_id": self.public_key_id,
                  "public_key_pem": self.public_key_pem,
                  "merchant_serial_no": self.merchant_serial_no,
                  "platform_certificates": [{"serial_no": s, "pem": p}
                                            for s, p in self.platform_certificates],
                  "sp_mchid": self.sp_mchid, "sub_mchid": self.sub_mchid}
        secrets_ = {"apiv3_key": self.apiv3_key}
        if self.merchant_private_key_pem:
            secrets_["merchant_private_key_pem"] = self.merchant_private_key_pem
        return config, secrets_

    def view(self) -> dict[str, Any]:
        """What the operator may see: ids, serials and expiry dates, never a secret."""
        certs = [{"serial_no": serial, "not_after": rfc3339(crypto.certificate_not_after(pem))}
                 for serial, pem in self.platform_certificates]
        return {"gateway": NAME, "mchid": self.mchid, "appid": self.appid,
                "public_key_id": self.public_key_id, "platform_certificates": certs,
                "merchant_serial_no": self.merchant_serial_no,
                "has_private_key": bool(self.merchant_private_key_pem),
                "sp_mchid": self.sp_mchid, "sub_mchid": self.sub_mchid}

    def verification_keys(self, now: datetime) -> dict[str, RSAPublicKey]:
        """serial -> WeChat Pay public key, for every key configured and valid now.

        Both kinds may be configured at once while WeChat Pay switches a merchant from
        platform certificates to a public key; a notification signed by either passes.
        """
        keys: dict[str, RSAPublicKey] = {}
        if self.public_key_id and self.public_key_pem:
            keys[self.public_key_id] = crypto.load_public_key(self.public_key_pem)
        for serial, pem in self.platform_certificates:
            try:
                _serial, key = crypto.load_certificate_key(pem, now=now)
            except ValueError as exc:  # expired: refused, but the other keys still work
                log.warning("wechat.certificate_unusable", serial_no=serial, error=str(exc))
                continue
            keys[serial] = key
        return keys

    def signing_key(self) -> RSAPrivateKey:
        """The merchant private key for outgoing requests; 409 when not configured."""
        if not (self.merchant_private_key_pem and self.merchant_serial_no):
            raise Conflict("WeChat Pay merchant key is not configured for this tenant",
                           code="gateway_not_configured")
        return crypto.load_private_key(self.merchant_private_key_pem)

    def wechat_serial(self) -> str | None:
        """The serial sent as `Wechatpay-Serial` on requests: the key WeChat Pay uses now."""
        if self.public_key_id:
            return self.public_key_id
        return self.platform_certificates[-1][0] if self.platform_certificates else None

    def owns(self, resource: Mapping[str, Any], *, transaction: bool) -> bool:
        """Whether a decrypted resource names this merchant (and, for payments, this app)."""
        if self.sp_mchid:
            if (resource.get("sp_mchid"), resource.get("sub_mchid")) != (self.sp_mchid,
                                                                         self.sub_mchid):
                return False
            return not transaction or self.appid in (resource.get("sp_appid"),
                                                     resource.get("sub_appid"))
        if resource.get("mchid") != self.mchid:
            return False
        return not transaction or resource.get("appid") == self.appid


def _invalid(message: str, code: str) -> Invalid:
    return Invalid(message, code=code)


def _pair(first: Any, second: Any, what: str, code: str) -> None:
    if bool(first) != bool(second):
        raise _invalid(f"{what} go together: give both or neither", code)


def _apiv3_key(body: Mapping[str, Any], stored: WechatConfig | None) -> str:
    key = body.get("apiv3_key")
    if key is None:
        if stored is None:
            raise _invalid("apiv3_key is required", "missing_apiv3_key")
        return stored.apiv3_key
    if len(key.encode("utf-8")) != 32:
        raise _invalid("apiv3_key must be exactly 32 bytes", "bad_apiv3_key")
    return key


def _public_key(body: Mapping[str, Any]) -> None:
    _pair(body.get("public_key_id"), body.get("public_key_pem"),
          "public_key_id and public_key_pem", "incomplete_public_key")
    if not body.get("public_key_id"):
        return
    if not body["public_key_id"].startswith(crypto.PUBLIC_KEY_ID_PREFIX):
        raise _invalid(f"public_key_id must start with {crypto.PUBLIC_KEY_ID_PREFIX}",
                       "bad_public_key_id")
    try:
        crypto.load_public_key(body["public_key_pem"])
    except ValueError as exc:
        raise _invalid(str(exc), "bad_public_key") from exc


def _certificates(body: Mapping[str, Any], now: datetime) -> tuple[tuple[str, str], ...]:
    certs = []
    for cert in body.get("platform_certificates") or ():
        try:
            serial, _key = crypto.load_certificate_key(cert["pem"], now=now)
        except ValueError as exc:
            raise _invalid(str(exc), "bad_platform_certificate") from exc
        given = cert["serial_no"].upper()
        if given.lstrip("0") != serial:
            raise _invalid(f"platform certificate {cert['serial_no']}: its serial is {serial}",
                           "certificate_serial_mismatch")
        certs.append((given, cert["pem"]))
    if len({s for s, _ in certs}) != len(certs):
        raise _invalid("platform certificates must have distinct serials", "duplicate_certificate")
    return tuple(certs)


def _merchant_key(body: Mapping[str, Any], stored: WechatConfig | None
                  ) -> tuple[str | None, str | None]:
    serial, pem = body.get("merchant_serial_no"), body.get("merchant_private_key_pem")
    if pem is None and stored is not None and stored.merchant_private_key_pem:
        pem = stored.merchant_private_key_pem  # kept: secrets need not be sent again
        serial = serial or stored.merchant_serial_no
    elif pem is not None:
        try:
            crypto.load_private_key(pem)
        except ValueError as exc:
            raise _invalid(str(exc), "bad_private_key") from exc
    _pair(serial, pem, "merchant_serial_no and merchant_private_key_pem",
          "incomplete_merchant_key")
    return serial, pem


def validated(body: Mapping[str, Any], stored: WechatConfig | None, now: datetime
              ) -> WechatConfig:
    """New settings from an operator's request; 422 with a precise code when unusable.

    The APIv3 key and the merchant private key may be left out of an update to keep
    the stored ones, so a key switch-over does not require sending secrets again.
    """
    _pair(body.get("sp_mchid"), body.get("sub_mchid"), "sp_mchid and sub_mchid",
          "incomplete_partner")
    apiv3_key = _apiv3_key(body, stored)
    _public_key(body)
    certs = _certificates(body, now)
    if not body.get("public_key_id") and not certs:
        raise _invalid("a WeChat Pay public key or at least one platform certificate is needed",
                       "no_wechat_key")
    merchant_serial, private_pem = _merchant_key(body, stored)
    return WechatConfig(mchid=body["mchid"], appid=body["appid"], apiv3_key=apiv3_key,
                        public_key_id=body.get("public_key_id"),
                        public_key_pem=body.get("public_key_pem"),
                        merchant_serial_no=merchant_serial,
                        merchant_private_key_pem=private_pem, platform_certificates=certs,
                        sp_mchid=body.get("sp_mchid"), sub_mchid=body.get("sub_mchid"))
