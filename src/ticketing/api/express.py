"""Express lanes: the request a sale opening floods goes past Starlette's layers.

Between uvicorn and an endpoint, FastAPI and Starlette run a stack for every request:
server-error and exception middleware, FastAPI's telemetry, body-limit and exit-stack
middleware, then the router, which tries each route in turn. Under a notification flood
that stack was 14% of a worker's Python time (py-spy, `make bench BENCH_ARGS=--profile`),
for a request whose route is known from its method and path alone.

`ExpressApp` is the FastAPI application with lanes: a request for the method and path
of an `ExpressRoute` (a LeanRoute: its endpoint takes the bare request) or of a
`FastPathRoute` (an ordinary route with a fast path), neither with path parameters,
goes through the service's own middleware (request log and metrics, body limits: the
same classes, in the same order) straight to its endpoint or fast path. What
Starlette's layers would do for it, the lane does too: the scope names its route (the
request log labels its histogram by it), an exception the endpoint raises is answered
by the handler the application registered for it, looked up as Starlette's exception
middleware does (the exception's class, then its bases), and anything else by
Starlette's server-error middleware with the application's handler of last resort,
outermost as in the whole stack. A request a fast path declines goes on, its body
handed over again, through the rest of the stack and the router to the route as
declared. Every other request takes the whole stack. tests/api/test_express.py and
tests/api/test_fast_path.py send the same requests both ways.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ticketing.api.lean import FastPathRoute, LeanRoute

Endpoint = Callable[[Request], Coroutine[Any, Any, Response]]


class ExpressRoute(LeanRoute):
    """A LeanRoute that takes the express lane (`ExpressApp`)."""


class _Lane:
    """The end of one lane: its route's endpoint, with the application's error handlers.

    For a FastPathRoute, its fast path: what that declines goes on to `fallback` (the
    application's stack below the service's middleware, router included), with the
    body it has read handed over again.
    """

    def __init__(self, app: FastAPI, route: APIRoute, fallback: ASGIApp) -> None:
        self.app, self.route, self.fallback = app, route, fallback
        self.endpoint: Endpoint = route.endpoint
        self.answer: Callable[[Request], Coroutine[Any, Any, Response | None]] = (
            type(route).fast if isinstance(route, FastPathRoute) else route.endpoint)

    def _handler(self, exc: Exception) -> Any:
        """The handler Starlette's exception middleware would pick; None for those of
        500 and Exception, which are the server-error middleware's, around the lane."""
        handlers = self.app.exception_handlers
        for cls in type(exc).__mro__:
            if cls is Exception:
                return None
            if cls in handlers:
                return handlers[cls]
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # what the router would have put in the scope for this route
        scope["endpoint"], scope["path_params"], scope["route"] = self.endpoint, {}, self.route
        request = Request(scope, receive, send)
        try:
            response = await self.answer(request)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise
            response = (await handler(request, exc) if inspect.iscoroutinefunction(handler)
                        else await run_in_threadpool(handler, request, exc))
        if response is None:  # declined by the fast path: the route as declared
            await self.fallback(scope, _again(await request.body(), receive), send)
            return
        await response(scope, receive, send)


def _again(body: bytes, receive: Receive) -> Receive:
    """`receive` for a request whose body was read already: that body, then what comes."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class _Dispatch:
    """The lanes by (method, path), then the whole stack for anything else."""

    def __init__(self, full: ASGIApp, lanes: dict[tuple[str, str], ASGIApp]) -> None:
        self.full, self.lanes = full, lanes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            lane = self.lanes.get((scope["method"], scope["path"]))
            if lane is not None:
                await lane(scope, receive, send)
                return
        await self.full(scope, receive, send)


def _express_routes(routes: Any) -> Any:
    """The ExpressRoutes and FastPathRoutes among `routes`, and in the routers included
    without a prefix (FastAPI keeps an included router whole, as its `original_router`)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            if not getattr(getattr(route, "include_context", None), "prefix", ""):
                yield from _express_routes(inner.routes)
        elif isinstance(route, (ExpressRoute, FastPathRoute)):
            yield route


class ExpressApp(FastAPI):
    """FastAPI, with an express lane for each `ExpressRoute` and `FastPathRoute`.

    `express = False`, set before the first request, builds the whole stack alone
    (what tests compare the lanes against).
    """

    express = True

    def build_middleware_stack(self) -> ASGIApp:
        full = super().build_middleware_stack()
        if not self.express:
            return full
        # as FastAPI builds its stack: the handler of 500 or Exception answers what
        # nothing else handled, outside the service's own middleware
        error_handler = None
        for key, value in self.exception_handlers.items():
            if key in (500, Exception):
                error_handler = value
        # what a fast path declines goes on below the service's middleware (which
        # the lane has been through): the same stack, built without it
        mine, self.user_middleware = self.user_middleware, []
        try:
            below = super().build_middleware_stack()
        finally:
            self.user_middleware = mine
        lanes: dict[tuple[str, str], ASGIApp] = {}
        for route in _express_routes(self.routes):
            if not route.param_convertors:
                lane: ASGIApp = _Lane(self, route, below)
                for cls, args, kwargs in reversed(self.user_middleware):
                    lane = cls(lane, *args, **kwargs)
                lane = ServerErrorMiddleware(lane, handler=error_handler, debug=self.debug)
                for method in route.methods:
                    lanes[(method, route.path)] = lane
        return _Dispatch(full, lanes) if lanes else full
