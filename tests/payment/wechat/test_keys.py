"""Both ways WeChat Pay signs (public key id, platform certificate) and the switch-over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.factories import place_order
from tests.payment.wechat.helpers import admin_order, configure, notifications, payment, send
from tests.wechat_fakes import WechatPayFake
from ticketing.payment.gateways.wechat.config import WechatConfig


@pytest.fixture
def fake() -> WechatPayFake:
    """A merchant whose WeChat Pay has both a platform certificate and a public key."""
    return WechatPayFake.with_certificate()


def _paid_with(client, fake, serial) -> int:
    order = place_order(client)
    status = send(client, payment(fake, order, serial=serial)).status_code
    if status == 204:
        assert admin_order(client, order["order_id"])["payment_status"] == 2
    else:
        assert admin_order(client, order["order_id"])["payment_status"] == 0
    return status


def test_public_key_only(client, fake):
    assert configure(client, fake, certificate=False).status_code == 200
    assert _paid_with(client, fake, fake.public_key_id) == 204
    assert _paid_with(client, fake, fake.platform_serial) == 401
    assert notifications(client)[0]["verification"] == "failed:unknown_serial"


def test_certificate_only(client, fake):
    assert configure(client, fake, public_key=False).status_code == 200
    assert _paid_with(client, fake, fake.platform_serial) == 204
    headers, body = payment(fake, place_order(client), serial=fake.platform_serial)
    headers["Wechatpay-Serial"] = fake.platform_serial.lower()  # serials ignore case
    assert send(client, (headers, body)).status_code == 204
    assert _paid_with(client, fake, fake.public_key_id) == 401
    assert notifications(client)[0]["verification"] == "failed:unknown_serial"


def test_switch_over_from_certificate_to_public_key(client, fake):
    assert configure(client, fake, public_key=False).status_code == 200
    old_style = payment(fake, place_order(client), serial=fake.platform_serial)
    # WeChat Pay announces the public key: both are configured while it switches
    assert configure(client, fake, apiv3_key=None, merchant_private_key_pem=None).status_code == 200
    assert _paid_with(client, fake, fake.platform_serial) == 204
    assert _paid_with(client, fake, fake.public_key_id) == 204
    # the certificate is removed: what it signs is refused from now on
    assert configure(client, fake, certificate=False).status_code == 200
    assert _paid_with(client, fake, fake.public_key_id) == 204
    assert _paid_with(client, fake, fake.platform_serial) == 401
    r = send(client, old_style)
    assert r.status_code == 401 and r.json()["code"] == "FAIL"
    assert notifications(client)[0]["verification"] == "failed:unknown_serial"


def test_a_key_signing_under_another_serial_is_refused(client, fake):
    """The certificate's serial with the public key's signature: the serial picks the key."""
    assert configure(client, fake).status_code == 200
    order = place_order(client)
    headers, body = payment(fake, order, serial=fake.public_key_id)
    headers["Wechatpay-Serial"] = fake.platform_serial
    assert send(client, (headers, body)).status_code == 401
    assert notifications(client)[0]["verification"] == "failed:bad_signature"


def test_an_expired_certificate_stops_verifying_but_the_public_key_goes_on(fake):
    config = WechatConfig(mchid=fake.mchid, appid=fake.appid, apiv3_key="k" * 32,
                          public_key_id=fake.public_key_id, public_key_pem=fake.public_key_pem,
                          platform_certificates=((fake.platform_serial,
                                                  fake.platform_certificate_pem),))
    now = datetime.now(UTC)
    assert set(config.verification_keys(now)) == {fake.public_key_id, fake.platform_serial}
    assert set(config.verification_keys(now + timedelta(days=3650))) == {fake.public_key_id}
