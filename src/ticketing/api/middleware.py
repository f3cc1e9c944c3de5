"""ASGI middleware: body size and read-time limits, request logging and metrics."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import structlog

from ticketing.kit.metrics import REQUEST_SECONDS

log = structlog.get_logger(component="http")


async def _send_error(send: Any, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": message, "code": code}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Refuse bodies over `max_bytes` (413) before reading them whole, and slow ones (408)."""

    def __init__(self, app: Any, max_bytes: int, timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = True
                if too_big:
                    await _send_error(send, 413, "payload_too_large",
                                      f"Request body over {self.max_bytes} bytes")
                    return
        guard = _BodyGuard(receive, send, self.max_bytes, self.timeout)
        try:
            await self.app(scope, guard.receive, guard.send)
        except Exception:
            if guard.refused is None or guard.started:
                raise
        if guard.refused is not None and not guard.started:
            if guard.refused == "timeout":
                await _send_error(send, 408, "request_timeout", "Request body not received in time")
            else:
                await _send_error(send, 413, "payload_too_large",
                                  f"Request body over {self.max_bytes} bytes")


class _BodyGuard:
    """The receive/send pair BodyLimitMiddleware hands the app for one request.

    The whole body must arrive within `timeout` seconds of the app asking for it (a
    deadline, not a per-chunk wait: a byte every few seconds must not hold a
    connection for hours). Once the body is refused, whatever the app makes of the
    refusal (FastAPI turns a failed body read into a 400) is dropped for our answer.
    """

    def __init__(self, receive: Any, send: Any, max_bytes: int, timeout: float) -> None:
        self._receive, self._send = receive, send
        self.max_bytes, self.timeout = max_bytes, timeout
        self.seen, self.deadline, self.done = 0, None, False
        self.refused: str | None = None  # "size" or "timeout"
        self.started = False

    def _refuse(self, why: str) -> _TooLarge:
        self.refused = why
        return _TooLarge(why)

    async def receive(self) -> Any:
        if self.done:  # body complete: later receives wait for the disconnect, untimed
            return await self._receive()
        if self.refused is not None:
            raise _TooLarge(self.refused)
        if self.deadline is None:
            self.deadline = asyncio.get_running_loop().time() + self.timeout
        try:  # a timer on this task, not a task per receive as asyncio.wait_for makes
            async with asyncio.timeout_at(self.deadline):
                message = await self._receive()
        except TimeoutError:
            raise self._refuse("timeout") from None
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.max_bytes:
                raise self._refuse("size")
            self.done = not message.get("more_body", False)
        return message

    async def send(self, message: Any) -> None:
        if self.refused is not None and not self.started:
            return  # the app's answer to a refused body; ours goes out instead
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


class RequestLogMiddleware:
    """One structured line and one histogram sample per request."""

    def __init__(self, app: Any) -> None:
        self.app = app
        # Histogram children by (method, route, status class): `labels()` takes a lock and
        # builds a key each time; the set is small (methods x routes x 5), so keep them.
        self._histograms: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        given_id, tenant = b"", b"default"
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given_id = value
            elif name == b"x-tenant-id":
                tenant = value
        request_id = given_id.decode("latin-1")[:64] or uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id,
                                               tenant=tenant.decode("latin-1")[:64])

        async def capture(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            elapsed = time.perf_counter() - started
            key = (scope["method"], getattr(scope.get("route"), "path", "unmatched"), status // 100)
            histogram = self._histograms.get(key)
            if histogram is None:
                histogram = self._histograms[key] = REQUEST_SECONDS.labels(
                    key[0], key[1], f"{key[2]}xx")
            histogram.observe(elapsed)
            log.info("request", method=scope["method"], path=scope["path"], status=status,
                     ms=round(elapsed * 1000, 2))
