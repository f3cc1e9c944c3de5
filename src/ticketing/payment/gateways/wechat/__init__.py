"""WeChat Pay API v3: the cryptography layer (signatures, AEAD resources, pay parameters)."""

from ticketing.payment.gateways.wechat.crypto import (
    ALGORITHM,
    PROBE_PREFIX,
    PUBLIC_KEY_ID_PREFIX,
    SIGNATURE_TYPE,
    WechatCryptoError,
    WechatDecryptError,
    WechatVerificationError,
    build_authorization,
    certificate_not_after,
    decrypt_resource,
    encrypt_resource,
    jsapi_pay_params,
    load_certificate_key,
    load_private_key,
    load_public_key,
    parse_authorization,
    sign_message,
    sign_response,
    verify_authorization,
    verify_jsapi_pay_params,
    verify_notification,
    verify_response,
)

__all__ = [
    "ALGORITHM", "PROBE_PREFIX", "PUBLIC_KEY_ID_PREFIX", "SIGNATURE_TYPE",
    "WechatCryptoError", "WechatDecryptError", "WechatVerificationError",
    "build_authorization", "certificate_not_after", "decrypt_resource", "encrypt_resource",
    "jsapi_pay_params", "load_certificate_key", "load_private_key", "load_public_key",
    "parse_authorization", "sign_message", "sign_response", "verify_authorization",
    "verify_jsapi_pay_params", "verify_notification", "verify_response",
]
