"""Gateway adapters, built per tenant from its stored settings."""

from __future__ import annotations

from typing import Any, Callable

from ticketing.kit.errors import Conflict
from ticketing.models import GatewayConfig
from ticketing.payment.gateways.base import Gateway
from ticketing.payment.gateways.mock import MockGateway, secret_of
from ticketing.payment.gateways.wechat import gateway as wechat
from ticketing.settings import Settings

Builder = Callable[[GatewayConfig | None, Settings], Gateway]


def _mock(row: GatewayConfig | None, _settings: Settings) -> Gateway:
    return MockGateway(secret_of(row))


BUILDERS: dict[str, Builder] = {"mock": _mock}
BUILDERS["wechat"] = wechat.build


def register(name: str, builder: Builder) -> None:
    """Make a gateway available under `name`."""
    BUILDERS[name] = builder


def build(name: str, row: GatewayConfig | None, settings: Settings) -> Gateway:
    """The tenant's adapter for gateway `name`; 409 if it cannot be used."""
    builder: Any = BUILDERS.get(name)
    if builder is None:
        raise Conflict(f"Gateway {name} is not available", code="gateway_not_configured")
    return builder(row, settings)
