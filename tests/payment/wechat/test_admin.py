"""The operator's WeChat Pay settings: validated on the way in, secrets never out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.factories import CUSTOMER, OPERATOR
from tests.payment.wechat.helpers import configure
from tests.wechat_fakes import (
    WechatPayFake,
    make_platform_certificate,
    make_rsa_keypair,
    public_key_pem,
)

PATH = "/admin/tenants/default/gateways/wechat"


def _assert_no_secret(fake: WechatPayFake, text: str) -> None:
    assert fake.apiv3_key.decode() not in text
    assert "PRIVATE KEY" not in text and "BEGIN" not in text
    pem_lines = [l for l in fake.merchant_private_key_pem.splitlines() if "-----" not in l]
    assert not any(line in text for line in pem_lines)


def test_public_key_mode_is_stored_and_shown_without_secrets(client, fake):
    r = configure(client, fake)
    assert r.status_code == 200, r.text
    view = r.json()
    assert view == {"gateway": "wechat", "mchid": fake.mchid, "appid": fake.appid,
                    "public_key_id": fake.public_key_id, "platform_certificates": [],
                    "merchant_serial_no": fake.merchant_serial, "has_private_key": True,
                    "sp_mchid": None, "sub_mchid": None}
    got = client.get(PATH, headers=OPERATOR)
    assert got.status_code == 200 and got.json() == view
    _assert_no_secret(fake, r.text + got.text)


def test_certificate_only_and_both(client):
    fake = WechatPayFake.with_certificate()
    r = configure(client, fake, public_key=False)
    assert r.status_code == 200, r.text
    view = r.json()
    assert view["public_key_id"] is None
    [cert] = view["platform_certificates"]
    assert cert["serial_no"] == fake.platform_serial
    assert datetime.fromisoformat(cert["not_after"]) > datetime.now(UTC)
    both = configure(client, fake)
    assert both.status_code == 200
    assert both.json()["public_key_id"] == fake.public_key_id
    assert [c["serial_no"] for c in both.json()["platform_certificates"]] == [fake.platform_serial]
    _assert_no_secret(fake, r.text + both.text + client.get(PATH, headers=OPERATOR).text)


def _expired_certificate() -> dict:
    now = datetime.now(UTC)
    pem = make_platform_certificate(make_rsa_keypair("wechat-platform-cert"), "ABCDEF01",
                                    not_before=now - timedelta(days=400),
                                    not_after=now - timedelta(days=1))
    return {"serial_no": "ABCDEF01", "pem": pem}


def _bad_settings(fake: WechatPayFake) -> list[tuple[dict, str]]:
    cert = WechatPayFake.with_certificate().gateway_config()["platform_certificates"][0]
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return [
        ({"apiv3_key": "k" * 31}, "bad_apiv3_key"),
        ({"apiv3_key": "k" * 33}, "bad_apiv3_key"),
        ({"apiv3_key": "密" * 11}, "bad_apiv3_key"),  # 33 bytes in UTF-8
        ({"public_key_pem": "garbage"}, "bad_public_key"),
        ({"public_key_pem": public_key_pem(weak)}, "bad_public_key"),
        ({"public_key_pem": cert["pem"]}, "bad_public_key"),
        ({"public_key_pem": None}, "incomplete_public_key"),
        ({"public_key_id": "0114232134912410000000000000"}, "bad_public_key_id"),
        ({"public_key_id": None, "public_key_pem": None}, "no_wechat_key"),
        ({"platform_certificates": [{"serial_no": "AB", "pem": "garbage"}]},
         "bad_platform_certificate"),
        ({"platform_certificates": [_expired_certificate()]}, "bad_platform_certificate"),
        ({"platform_certificates": [dict(cert, serial_no="DEADBEEF")]},
         "certificate_serial_mismatch"),
        ({"platform_certificates": [cert, cert]}, "duplicate_certificate"),
        ({"merchant_private_key_pem": fake.public_key_pem}, "bad_private_key"),
        ({"merchant_serial_no": None}, "incomplete_merchant_key"),
        ({"sp_mchid": "1900000001"}, "incomplete_partner"),
        ({"mchid": "not-digits"}, "validation_error"),
        ({"appid": ""}, "validation_error"),
        ({"platform_certificates": [{"serial_no": "XYZ", "pem": "x"}]}, "validation_error"),
    ]


def test_every_bad_setting_is_refused_with_its_code_and_keeps_the_old(client, fake):
    good = configure(client, fake).json()
    for changes, code in _bad_settings(fake):
        r = configure(client, fake, **changes)
        assert r.status_code == 422, (changes.keys(), r.text)
        assert r.json()["code"] == code, (changes.keys(), r.json())
        _assert_no_secret(fake, r.text)
    assert configure(client, fake).json() == good


@pytest.mark.parametrize("changes,code", [({"apiv3_key": None}, "missing_apiv3_key"),
                                          ({"merchant_private_key_pem": None},
                                           "incomplete_merchant_key")])
def test_first_configuration_needs_its_secrets(client, fake, changes, code):
    r = configure(client, fake, **changes)
    assert r.status_code == 422 and r.json()["code"] == code
    assert client.get(PATH, headers=OPERATOR).status_code == 404


def test_secrets_left_out_of_an_update_are_kept(client, fake):
    configure(client, fake)
    r = configure(client, fake, apiv3_key=None, merchant_private_key_pem=None,
                  merchant_serial_no=None)
    assert r.status_code == 200 and r.json()["has_private_key"] is True
    assert r.json()["merchant_serial_no"] == fake.merchant_serial


def test_outgoing_keys_are_optional(client, fake):
    r = configure(client, fake, merchant_serial_no=None, merchant_private_key_pem=None)
    assert r.status_code == 200 and r.json()["has_private_key"] is False


def test_not_configured_unknown_tenant_and_auth(client, fake):
    r = client.get(PATH, headers=OPERATOR)
    assert r.status_code == 404 and r.json()["code"] == "gateway_not_configured"
    r = client.put("/admin/tenants/nobody/gateways/wechat", json=fake.gateway_config(),
                   headers=OPERATOR)
    assert r.status_code == 404 and r.json()["code"] == "tenant_not_found"
    for headers in ({}, CUSTOMER):
        assert client.put(PATH, json=fake.gateway_config(), headers=headers).status_code == 401
        assert client.get(PATH, headers=headers).status_code == 401
