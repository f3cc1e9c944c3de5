"""Fixtures for WeChat Pay: a fake WeChat Pay served locally, the app pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import make_settings
from tests.payment.wechat.helpers import PUBLIC_BASE_URL, configure
from tests.wechat_fakes import WechatPayFake, serve_fake
from ticketing.settings import Settings


@pytest.fixture
def fake() -> WechatPayFake:
    """WeChat Pay for the default tenant's merchant (public-key mode)."""
    return WechatPayFake()


@pytest.fixture
def wechat_base(fake: WechatPayFake) -> Iterator[str]:
    """The fake's API, on a local port."""
    with serve_fake(fake) as base_url:
        yield base_url


@pytest.fixture
def settings(db_url: str, tmp_path: Path, wechat_base: str) -> Settings:
    """The suite's settings, with outgoing WeChat Pay calls going to the fake."""
    return make_settings(db_url, tmp_path, wechat_api_base=wechat_base,
                         public_base_url=PUBLIC_BASE_URL)


@pytest.fixture
def wechat(client, fake: WechatPayFake):
    """The demo client with the default tenant's WeChat Pay configured."""
    r = configure(client, fake)
    assert r.status_code == 200, r.text
    return client
