"""A payment gateway as the service meets it: many clients at once, resending until answered.

`Gateway.deliver` posts one request and, like WeChat Pay or the mock gateway's retry
policy, resends it whenever there was no answer (connection refused or cut) or the
answer was a 5xx, until a 2xx or 4xx arrives. Every attempt is kept for the checks.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.factories import OPERATOR


@dataclass
class Delivery:
    """The final answer to one request, and what the attempts before it got."""

    path: str
    request: dict[str, Any] | None
    status: int = 0
    body: Any = None
    attempts: list[str] = field(default_factory=list)  # "503", "ConnectError", ...

    @property
    def retried(self) -> bool:
        return len(self.attempts) > 1


class GaveUp(AssertionError):
    """No 2xx/4xx answer before the deadline: the service lost a request."""


class Gateway:
    """Concurrent, retrying HTTP client over one or more server base URLs."""

    def __init__(self, base_urls: list[str], *, concurrency: int = 64, deadline: float = 180,
                 request_timeout: float = 60) -> None:
        self.base_urls = base_urls
        self._next = itertools.cycle(range(len(base_urls)))
        self.deadline = deadline
        self.limit = asyncio.Semaphore(concurrency)
        self.client = httpx.AsyncClient(
            timeout=request_timeout, limits=httpx.Limits(max_connections=None,
                                                         max_keepalive_connections=concurrency))

    async def __aenter__(self) -> Gateway:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.client.aclose()

    async def deliver(self, method: str, path: str, *, json: dict[str, Any] | None = None,
                      headers: dict[str, str] | None = None, retry: bool = True) -> Delivery:
        """Send until a 2xx/4xx answer (or once, when `retry` is false)."""
        delivery = Delivery(path, json)
        give_up = time.monotonic() + self.deadline
        async with self.limit:
            while True:
                base = self.base_urls[next(self._next)]
                try:
                    r = await self.client.request(method, base + path, json=json, headers=headers)
                except httpx.TransportError as exc:
                    delivery.attempts.append(type(exc).__name__)
                else:
                    delivery.attempts.append(str(r.status_code))
                    if r.status_code < 500 or not retry:
                        delivery.status = r.status_code
                        delivery.body = r.json() if r.content else None
                        return delivery
                if not retry:
                    return delivery
                if time.monotonic() > give_up:
                    raise GaveUp(f"{method} {path} {json}: no answer after {delivery.attempts}")
                await asyncio.sleep(0.05 * min(len(delivery.attempts), 10))

    async def notify(self, body: dict[str, Any], tenant: str = "default", **kw: Any) -> Delivery:
        return await self.deliver("POST", "/payments/notify", json=body,
                                  headers={"X-Tenant-ID": tenant}, **kw)

    async def refund(self, order_id: int, tenant: str = "default") -> Delivery:
        return await self.deliver("POST", f"/admin/tenants/{tenant}/orders/{order_id}/refund",
                                  headers=OPERATOR)


def run(coro: Any) -> Any:
    """Run a coroutine to completion from a synchronous test."""
    return asyncio.run(coro)
