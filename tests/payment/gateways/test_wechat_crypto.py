"""WeChat Pay API v3 cryptography, with real RSA-2048 and AES-256-GCM, and the fake server."""

from __future__ import annotations

import base64
import json
import secrets
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tests.wechat_fakes import (
    WechatPayFake,
    make_platform_certificate,
    make_rsa_keypair,
    public_key_pem,
    serve_fake,
)
from ticketing.payment.gateways.wechat import crypto
from ticketing.payment.gateways.wechat.crypto import (
    WechatDecryptError,
    WechatVerificationError,
)

NOW = datetime.now(UTC).replace(microsecond=0)  # the fake's certificate is valid around now
TS = int(NOW.timestamp())


@pytest.fixture
def fake() -> WechatPayFake:
    return WechatPayFake(clock=lambda: float(TS))


@pytest.fixture
def fake_cert() -> WechatPayFake:
    return WechatPayFake.with_certificate(clock=lambda: float(TS))


def _paid(fake: WechatPayFake, **kwargs) -> tuple[dict[str, str], bytes]:
    resource = fake.transaction_resource("T20260501001", "4200000000000000000000000001", 9900)
    return fake.notification("TRANSACTION.SUCCESS", resource, **kwargs)


def _reason(exc_info: pytest.ExceptionInfo) -> str:
    return exc_info.value.reason_code


# ------------------------------------------------------------------ notification signatures


def test_notification_verifies_with_public_key_id_and_decrypts(fake: WechatPayFake) -> None:
    headers, body = _paid(fake)
    assert headers["Wechatpay-Serial"].startswith(crypto.PUBLIC_KEY_ID_PREFIX)
    keys = {fake.public_key_id: crypto.load_public_key(fake.public_key_pem)}
    crypto.verify_notification(headers, body, keys, NOW)
    envelope = json.loads(body)
    assert envelope["resource_type"] == "encrypt-resource"
    assert envelope["resource"]["original_type"] == "transaction"
    plain = crypto.decrypt_resource(envelope["resource"], fake.apiv3_key)
    assert plain["out_trade_no"] == "T20260501001"
    assert plain["trade_state"] == "SUCCESS" and plain["trade_type"] == "JSAPI"
    assert plain["amount"] == {"total": 9900, "payer_total": 9900, "currency": "CNY",
                               "payer_currency": "CNY"}
    assert plain["success_time"].endswith("+08:00")
    assert plain["payer"]["openid"]


def test_notification_verifies_with_platform_certificate(fake_cert: WechatPayFake) -> None:
    serial, key = crypto.load_certificate_key(fake_cert.platform_certificate_pem, now=NOW)
    assert serial == fake_cert.platform_serial
    headers, body = _paid(fake_cert, serial=serial)
    crypto.verify_notification(headers, body, {serial: key}, NOW)


def test_key_switch_over_accepts_either_key(fake_cert: WechatPayFake) -> None:
    serial, cert_key = crypto.load_certificate_key(fake_cert.platform_certificate_pem)
    keys = {serial: cert_key,
            fake_cert.public_key_id: crypto.load_public_key(fake_cert.public_key_pem)}
    for using in (serial, fake_cert.public_key_id):
        headers, body = _paid(fake_cert, serial=using)
        crypto.verify_notification(headers, body, keys, NOW)


def test_keys_are_not_interchangeable(fake_cert: WechatPayFake) -> None:
    headers, body = _paid(fake_cert, serial=fake_cert.platform_serial)
    swapped = {fake_cert.platform_serial: fake_cert.wechat_key.public_key()}
    with pytest.raises(WechatVerificationError) as exc:
        crypto.verify_notification(headers, body, swapped, NOW)
    assert _reason(exc) == "bad_signature"


def test_header_names_are_case_insensitive(fake: WechatPayFake) -> None:
    headers, body = _paid(fake)
    lowered = {k.lower(): v for k, v in headers.items()}
    crypto.verify_notification(lowered, body, fake.verification_keys(), NOW)
    upper = {k.upper(): v for k, v in headers.items()}
    crypto.verify_notification(upper, body, fake.verification_keys(), NOW)


def test_signature_type_header_is_optional(fake: WechatPayFake) -> None:
    headers, body = _paid(fake)
    del headers["Wechatpay-Signature-Type"]
    crypto.verify_notification(headers, body, fake.verification_keys(), NOW)


@pytest.mark.parametrize("name", ["Wechatpay-Serial", "Wechatpay-Signature",
                                  "Wechatpay-Timestamp", "Wechatpay-Nonce"])
@pytest.mark.parametrize("how", ["absent", "empty"])
def test_missing_header_is_refused(fake: WechatPayFake, name: str, how: str) -> None:
    headers, body = _paid(fake)
    if how == "absent":
        del headers[name]
    else:
        headers[name] = "  "
    with pytest.raises(WechatVerificationError) as exc:
        crypto.verify_notification(headers, body, fake.verification_keys(), NOW)
    assert _reason(exc) == "missing_header"


def test_bad_signature_type_is_refused(fake: WechatPayFake) -> None:
    headers, body = _paid(fake, tamper="signature_type")
    with pytest.raises(WechatVerificationError) as exc:
        crypto.verify_notification(headers, body, fake.verification_keys(), NOW)
    assert _reason(exc) == "bad_signature_type"


def test_signature_probe_is_refused(fake: WechatPayFake) -> None:
    headers, body = _paid(fake, tamper="probe")
    assert headers["Wechatpay-Signature"].startswith("WECHATPAY/SIGNTEST/")
    with pytest.raises(WechatVerificationError) as exc:
        crypto.verify_notification(headers, body, fake.verification_keys(), NOW)
    assert _reason(exc) == "signature_probe"


@pytest.mark.parametrize("offset", [-299, -300, 0, 299, 300])
def test_timestamp_within_skew_is_accepted(fake: WechatPayFake, offset: int) -> None:
    headers, body = _paid(fake, timestamp=TS + offset)
    crypto.verify_notification(headers, body, fake.verification_keys(), NOW)


@pytest.mark.parametrize("offset", [-301, 301, -86400])
def test_timestamp_outside_skew_is_refused(fake: WechatPayFake, offset: int) -> None:
    headers, body = _paid(fake, timestamp=TS + offset)
    with pytest.raises(WechatVerificationError) as exc:
        crypto.verify_notification(headers, body, fake.verification_keys(), NOW)
    assert _reason(exc) == "bad_timestamp"


@pytest.mark.parametrize("template", ["abc", "{ts}.5", "+{ts}", " {ts}x", "{ts}e0", "1e9",
                                      "\uff19\uff19\uff19", "1" * 40])
def test_non_integer_timestamp_is_refused(fake: WechatPayFake, template: str) -> None:
    headers, body = _paid(fake)
    headers["Wechatpay-Timestamp"] = template.format(ts=TS)
    with pytest.raises(WechatVerificationError) as exc:
        crypto.verify_notification(headers, body, fake.verification_keys(), NOW)
    assert _reason(exc) == "bad_timestamp"


def test_skew_limit_is_configurable(fake: WechatPayFake) -> None:
    headers, body = _paid(fake, timestamp=TS - 61)
    with pytest.raises(WechatVerificationError):
        crypto.verify_notification(headers, body, fake.verification_keys(), NOW, 60)


def test_unknown_serial_is_refused(fake_cert: WechatPayFake) -> None:
    headers, body = _paid(fake_cert, serial=fake_cert.public_key_id)
    serial, key = crypto.load_certificate_key(fake_cert.platform_certificate_pem)
    with pytest.raises(WechatVerificationError) as exc:
        crypto.verify_notification(headers, body, {serial: key}, NOW)
    assert _reason(exc) == "unknown_serial"
    with pytest.raises(WechatVerificationError) as exc:
        crypto.verify_notification(headers, body, {}, NOW)
    assert _reason(exc) == "unknown_serial"


@pytest.mark.parametrize("tamper", ["body", "signature", "wrong_signer"])
def test_tampered_notification_is_refused(fake: WechatPayFake, tamper: str) -> None:
    headers, body = _paid(fake, tamper=tamper)
    with pytest.raises(WechatVerificationError) as exc:
        crypto.verify_notification(headers, body, fake.verification_keys(), NOW)
    assert _reason(exc) == "bad_signature"


@pytest.mark.parametrize("signature", ["not base64 !!", "", "QUJD"])
def test_garbage_signature_is_refused(fake: WechatPayFake, signature: str) -> None:
    headers, body = _paid(fake)
    headers["Wechatpay-Signature"] = signature
    with pytest.raises(WechatVerificationError) as exc:
        crypto.verify_notification(headers, body, fake.verification_keys(), NOW)
    assert _reason(exc) in {"bad_signature", "missing_header"}


def test_body_is_verified_as_raw_bytes(fake: WechatPayFake) -> None:
    headers, body = _paid(fake)
    reserialized = json.dumps(json.loads(body)).encode()  # same JSON, other bytes
    with pytest.raises(WechatVerificationError):
        crypto.verify_notification(headers, reserialized, fake.verification_keys(), NOW)


def test_naive_now_is_a_programming_error(fake: WechatPayFake) -> None:
    headers, body = _paid(fake)
    with pytest.raises(TypeError):
        crypto.verify_notification(headers, body, fake.verification_keys(),
                                   NOW.replace(tzinfo=None))


# ------------------------------------------------------------------ encrypted resources


def test_refund_notification_round_trip(fake: WechatPayFake) -> None:
    plain = fake.refund_resource("T1", "R1", "50300000000000000000000001", "SUCCESS", 9900, 9900)
    headers, body = fake.notification("REFUND.SUCCESS", plain)
    crypto.verify_notification(headers, body, fake.verification_keys(), NOW)
    resource = json.loads(body)["resource"]
    assert resource["original_type"] == "refund" and resource["associated_data"] == "refund"
    opened = crypto.decrypt_resource(resource, fake.apiv3_key)
    assert opened == plain
    assert set(opened) >= {"mchid", "out_trade_no", "transaction_id", "out_refund_no",
                           "refund_id", "refund_status", "success_time",
                           "user_received_account", "amount"}
    assert opened["amount"] == {"total": 9900, "refund": 9900, "payer_total": 9900,
                                "payer_refund": 9900}


@pytest.mark.parametrize("tamper", ["ciphertext", "aad", "apiv3_key"])
def test_tampered_resource_does_not_decrypt(fake: WechatPayFake, tamper: str) -> None:
    headers, body = _paid(fake, tamper=tamper)
    crypto.verify_notification(headers, body, fake.verification_keys(), NOW)  # signed as sent
    with pytest.raises(WechatDecryptError) as exc:
        crypto.decrypt_resource(json.loads(body)["resource"], fake.apiv3_key)
    assert _reason(exc) == "decrypt_failed"


def _resource(key: bytes, plain: bytes = b'{"a":1}', aad: str = "transaction") -> dict:
    sealed = AESGCM(key).encrypt(b"0123456789ab", plain, aad.encode())
    return {"original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": base64.b64encode(sealed).decode(), "associated_data": aad,
            "nonce": "0123456789ab"}


def test_decrypt_with_independent_aesgcm() -> None:
    key = secrets.token_hex(16).encode()
    assert crypto.decrypt_resource(_resource(key), key) == {"a": 1}
    assert crypto.decrypt_resource(_resource(key), key.decode()) == {"a": 1}  # str key too


def test_encrypt_resource_round_trip() -> None:
    key = secrets.token_hex(16).encode()
    plain = {"out_trade_no": "T1", "desc": "支付成功"}
    sealed = crypto.encrypt_resource(plain, key, nonce="abcdefghijkl",
                                     associated_data="transaction", original_type="transaction")
    assert sealed["algorithm"] == "AEAD_AES_256_GCM" and sealed["nonce"] == "abcdefghijkl"
    assert crypto.decrypt_resource(sealed, key) == plain
    wrong_aad = dict(sealed, associated_data="refund")
    with pytest.raises(WechatDecryptError) as exc:
        crypto.decrypt_resource(wrong_aad, key)
    assert _reason(exc) == "decrypt_failed"


def test_wrong_algorithm_is_refused() -> None:
    key = secrets.token_hex(16).encode()
    for algorithm in ("AEAD_AES_128_GCM", None, "aead_aes_256_gcm"):
        with pytest.raises(WechatDecryptError) as exc:
            crypto.decrypt_resource(dict(_resource(key), algorithm=algorithm), key)
        assert _reason(exc) == "bad_algorithm"


@pytest.mark.parametrize("bad_key", [b"", b"x" * 31, b"x" * 33, "短" * 32, None])
def test_apiv3_key_must_be_32_bytes(bad_key) -> None:
    with pytest.raises(WechatDecryptError) as exc:
        crypto.decrypt_resource(_resource(b"k" * 32), bad_key)
    assert _reason(exc) == "bad_key"


def test_wrong_apiv3_key_does_not_decrypt() -> None:
    with pytest.raises(WechatDecryptError) as exc:
        crypto.decrypt_resource(_resource(b"k" * 32), b"j" * 32)
    assert _reason(exc) == "decrypt_failed"
    assert "kkkk" not in str(exc.value) and "jjjj" not in repr(exc.value)


@pytest.mark.parametrize("change", [{"ciphertext": "%%%"}, {"ciphertext": ""},
                                    {"nonce": None}, {"nonce": "short"}, {"ciphertext": "QUJD"}])
def test_malformed_resource_does_not_decrypt(change: dict) -> None:
    with pytest.raises(WechatDecryptError) as exc:
        crypto.decrypt_resource(dict(_resource(b"k" * 32), **change), b"k" * 32)
    assert _reason(exc) == "decrypt_failed"


@pytest.mark.parametrize("plain", [b"not json", b"[1, 2]", b"\xff\xfe", b'"text"'])
def test_plaintext_must_be_a_json_object(plain: bytes) -> None:
    with pytest.raises(WechatDecryptError) as exc:
        crypto.decrypt_resource(_resource(b"k" * 32, plain), b"k" * 32)
    assert _reason(exc) == "bad_plaintext"


# ------------------------------------------------------------------ loading keys


def _ec_public_pem(private_key: ec.EllipticCurvePrivateKey) -> str:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def test_load_public_key_refuses_bad_input(fake_cert: WechatPayFake) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    bad = ["", "garbage", fake_cert.platform_certificate_pem, fake_cert.merchant_private_key_pem,
           public_key_pem(small), _ec_public_pem(ec_key)]
    for pem in bad:
        with pytest.raises(ValueError) as exc:
            crypto.load_public_key(pem)
        assert "PRIVATE" not in str(exc.value)


def test_load_certificate_key() -> None:
    key = make_rsa_keypair("wechat-platform-cert")
    pem = make_platform_certificate(key, "0A1b2C3d4E5f")
    serial, public = crypto.load_certificate_key(pem)
    assert serial == "A1B2C3D4E5F"
    assert public.public_numbers() == key.public_key().public_numbers()
    expired = make_platform_certificate(key, "1234", not_before=NOW - timedelta(days=400),
                                        not_after=NOW - timedelta(days=1))
    with pytest.raises(ValueError, match="expired"):
        crypto.load_certificate_key(expired, now=NOW)
    assert crypto.certificate_not_after(expired) < NOW
    for bad in ("", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
                public_key_pem(key)):
        with pytest.raises(ValueError):
            crypto.load_certificate_key(bad)


def test_load_private_key(fake: WechatPayFake) -> None:
    key = crypto.load_private_key(fake.merchant_private_key_pem)
    assert key.public_key().public_numbers() == fake.merchant_key.public_key().public_numbers()
    with pytest.raises(ValueError):
        crypto.load_private_key(fake.public_key_pem)


# ------------------------------------------------------------------ merchant signatures


def test_authorization_header_round_trip(fake: WechatPayFake) -> None:
    body = json.dumps({"appid": fake.appid, "mchid": fake.mchid})
    header = crypto.build_authorization(fake.mchid, fake.merchant_serial, fake.merchant_key,
                                        "post", "/v3/pay/transactions/jsapi", body, TS, "N0NCE")
    assert header.startswith('WECHATPAY2-SHA256-RSA2048 mchid="1900000109",nonce_str="N0NCE",')
    fields = crypto.parse_authorization(header)
    assert fields["serial_no"] == fake.merchant_serial and fields["timestamp"] == str(TS)
    public = fake.merchant_key.public_key()
    crypto.verify_authorization(header, public, "POST", "/v3/pay/transactions/jsapi", body,
                                now=NOW)
    message = f"POST\n/v3/pay/transactions/jsapi\n{TS}\nN0NCE\n{body}\n".encode()
    public.verify(base64.b64decode(fields["signature"]), message, padding.PKCS1v15(),
                  hashes.SHA256())
    for method, url, sent in (("POST", "/v3/pay/transactions/jsapi", body + " "),
                              ("GET", "/v3/pay/transactions/jsapi", body),
                              ("POST", "/v3/pay/transactions/jsapi?x=1", body)):
        with pytest.raises(WechatVerificationError) as exc:
            crypto.verify_authorization(header, public, method, url, sent)
        assert _reason(exc) == "bad_signature"
    with pytest.raises(WechatVerificationError) as exc:
        crypto.verify_authorization(header, public, "POST", "/v3/pay/transactions/jsapi", body,
                                    now=NOW + timedelta(seconds=301))
    assert _reason(exc) == "bad_timestamp"


@pytest.mark.parametrize("header,reason", [
    ("", "missing_header"),
    ('WECHATPAY2-SHA256-RSA1024 mchid="1"', "bad_signature_type"),
    ('WECHATPAY2-SHA256-RSA2048 mchid="1",nonce_str="n"', "bad_authorization"),
    ('WECHATPAY2-SHA256-RSA2048 mchid=1,nonce_str="n"', "bad_authorization"),
    ('WECHATPAY2-SHA256-RSA2048 mchid="1",mchid="2",nonce_str="n",signature="s",'
     'timestamp="1",serial_no="x"', "bad_authorization"),
])
def test_malformed_authorization_is_refused(header: str, reason: str) -> None:
    with pytest.raises(WechatVerificationError) as exc:
        crypto.parse_authorization(header)
    assert _reason(exc) == reason


def test_build_authorization_refuses_quotes(fake: WechatPayFake) -> None:
    with pytest.raises(ValueError):
        crypto.build_authorization('1",x="', fake.merchant_serial, fake.merchant_key, "GET",
                                   "/v3/x", "", TS, "n")


def test_jsapi_pay_sign_verifies_with_merchant_public_key(fake: WechatPayFake) -> None:
    params = crypto.jsapi_pay_params(fake.appid, "wx201410272009395522657a690389285100",
                                     fake.merchant_key, TS, "5K8264ILTKCH16CQ2502SI8ZNMTM67VS")
    assert params["timeStamp"] == str(TS) and params["signType"] == "RSA"
    assert params["package"] == "prepay_id=wx201410272009395522657a690389285100"
    assert set(params) == {"appId", "timeStamp", "nonceStr", "package", "signType", "paySign"}
    message = (f"{fake.appid}\n{TS}\n5K8264ILTKCH16CQ2502SI8ZNMTM67VS\n"
               f"prepay_id=wx201410272009395522657a690389285100\n").encode()
    fake.merchant_key.public_key().verify(base64.b64decode(params["paySign"]), message,
                                          padding.PKCS1v15(), hashes.SHA256())
    assert crypto.verify_jsapi_pay_params(params, fake.merchant_key.public_key())
    assert not crypto.verify_jsapi_pay_params(dict(params, nonceStr="x"),
                                              fake.merchant_key.public_key())


def test_secrets_stay_out_of_reprs(fake_cert: WechatPayFake) -> None:
    text = repr(fake_cert)
    assert fake_cert.apiv3_key.decode() not in text and "PRIVATE" not in text
    assert "merchant_key" not in text and "wechat_key" not in text


# ------------------------------------------------------------------ the fake server


def _signed_post(fake: WechatPayFake, client: httpx.Client, path: str, payload: dict,
                 key=None) -> httpx.Response:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    header = crypto.build_authorization(fake.mchid, fake.merchant_serial,
                                        key or fake.merchant_key, "POST", path, body,
                                        int(fake.clock()), secrets.token_hex(16))
    return client.post(path, content=body.encode(), headers={
        "Authorization": header, "Content-Type": "application/json",
        "Accept": "application/json", "Wechatpay-Serial": fake.public_key_id})


def _jsapi_order(fake: WechatPayFake, **changes) -> dict:
    order = {"appid": fake.appid, "mchid": fake.mchid, "description": "3-in-1 Transport Pass",
             "out_trade_no": "T20260501001", "notify_url": "https://example.com/notify",
             "amount": {"total": 9900, "currency": "CNY"}, "payer": {"openid": "oUpF8uMuAJO"}}
    order.update(changes)
    return order


def test_fake_server_places_a_correctly_signed_jsapi_order() -> None:
    fake = WechatPayFake.with_certificate()
    with serve_fake(fake) as base_url, httpx.Client(base_url=base_url, timeout=10) as client:
        answer = _signed_post(fake, client, "/v3/pay/transactions/jsapi", _jsapi_order(fake))
        again = _signed_post(fake, client, "/v3/pay/transactions/jsapi", _jsapi_order(fake))
    assert answer.status_code == 200, answer.text
    assert answer.json()["prepay_id"].startswith("wx")
    assert again.json() == answer.json()
    crypto.verify_response(answer.headers, answer.content, fake.verification_keys(),
                           datetime.now(UTC))
    assert [r["path"] for r in fake.requests] == ["/v3/pay/transactions/jsapi"] * 2
    assert fake.requests[0]["json"]["out_trade_no"] == "T20260501001"
    assert fake.requests[0]["headers"]["Authorization"].startswith(crypto.SIGNATURE_TYPE)


def test_fake_server_refuses_a_wrongly_signed_request() -> None:
    fake = WechatPayFake()
    with serve_fake(fake) as base_url, httpx.Client(base_url=base_url, timeout=10) as client:
        forged = _signed_post(fake, client, "/v3/pay/transactions/jsapi", _jsapi_order(fake),
                              key=make_rsa_keypair("impostor"))
        unsigned = client.post("/v3/pay/transactions/jsapi", json=_jsapi_order(fake))
    assert forged.status_code == 401 and forged.json()["code"] == "SIGN_ERROR"
    assert unsigned.status_code == 401 and unsigned.json()["code"] == "SIGN_ERROR"
    assert len(fake.requests) == 2 and not fake.orders


@pytest.mark.parametrize("changes", [{"description": ""}, {"payer": {}}, {"amount": {}},
                                     {"amount": {"total": 0}}, {"appid": "wxother"},
                                     {"notify_url": None}])
def test_fake_server_refuses_bad_jsapi_params(changes: dict) -> None:
    fake = WechatPayFake()
    with serve_fake(fake) as base_url, httpx.Client(base_url=base_url, timeout=10) as client:
        answer = _signed_post(fake, client, "/v3/pay/transactions/jsapi",
                              _jsapi_order(fake, **changes))
    assert answer.status_code == 400 and answer.json()["code"] == "PARAM_ERROR"


def test_fake_server_refunds() -> None:
    fake = WechatPayFake()
    refund = {"out_trade_no": "T1", "out_refund_no": "R1", "notify_url": "https://e.com/n",
              "amount": {"refund": 9900, "total": 9900, "currency": "CNY"}}
    with serve_fake(fake) as base_url, httpx.Client(base_url=base_url, timeout=10) as client:
        ok = _signed_post(fake, client, "/v3/refund/domestic/refunds", refund)
        too_much = _signed_post(fake, client, "/v3/refund/domestic/refunds",
                                dict(refund, amount={"refund": 9901, "total": 9900,
                                                     "currency": "CNY"}))
        forged = _signed_post(fake, client, "/v3/refund/domestic/refunds", refund,
                              key=make_rsa_keypair("impostor"))
    assert ok.status_code == 200, ok.text
    assert ok.json()["status"] == "PROCESSING" and ok.json()["out_refund_no"] == "R1"
    assert ok.json()["refund_id"]
    crypto.verify_response(ok.headers, ok.content, fake.verification_keys(), datetime.now(UTC))
    assert too_much.status_code == 400 and too_much.json()["code"] == "PARAM_ERROR"
    assert forged.status_code == 401


def test_fake_server_forced_response() -> None:
    fake = WechatPayFake()
    fake.forced_responses.append((500, {"code": "SYSTEM_ERROR", "message": "busy"}))
    with serve_fake(fake) as base_url, httpx.Client(base_url=base_url, timeout=10) as client:
        first = _signed_post(fake, client, "/v3/pay/transactions/jsapi", _jsapi_order(fake))
        second = _signed_post(fake, client, "/v3/pay/transactions/jsapi", _jsapi_order(fake))
    assert first.status_code == 500 and second.status_code == 200
