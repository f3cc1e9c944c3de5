"""The application factory: settings in, a ready FastAPI app out; nothing at import."""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog
from fastapi import APIRouter, FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from sqlalchemy import text

from ticketing import __version__
from ticketing.api.deps import DbDep, Operator
from ticketing.api.errors import install_error_handlers
from ticketing.api.express import ExpressApp
from ticketing.api.middleware import BodyLimitMiddleware, RequestLogMiddleware
from ticketing.db import Database
from ticketing.kit.clock import utcnow
from ticketing.kit.errors import Invalid, NotFound, error_responses
from ticketing.kit.faults import KNOWN_POINTS, configure_faults
from ticketing.kit.logging import configure_logging
from ticketing.notification.endpoints import router as notification_admin
from ticketing.order import service as order_service
from ticketing.order.endpoints import admin as order_admin
from ticketing.order.endpoints import router as order_router
from ticketing.payment.admin import router as payment_admin
from ticketing.payment.endpoints import router as payment_router
from ticketing.settings import Settings
from ticketing.tenant.endpoints import router as tenant_admin
from ticketing.tenant.schemas import FaultIn
from ticketing.ticket.admin import router as ticket_admin
from ticketing.ticket.endpoints import router as ticket_router

log = structlog.get_logger(component="app")


def expire_once(db: Database, limit: int = 100) -> int:
    """Close one batch of expired unpaid orders; the job's unit of work."""
    with db.transaction() as session:
        return order_service.expire_due(session, utcnow(), limit)


def _expiry_loop(db: Database, interval: float, stop: threading.Event) -> None:
    while not stop.wait(interval):
        try:
            while expire_once(db) > 0 and not stop.is_set():
                pass
        except Exception:  # keep the job alive; the next round retries
            log.exception("expiry.failed")


ops = APIRouter(tags=["operations"])


@ops.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok", "version": __version__}


@ops.get("/readyz")
def readyz(db: DbDep) -> Response:
    """The database answers."""
    try:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        log.warning("readyz.failed", error=str(exc))
        return Response('{"status":"unavailable","code":"database_unavailable",'
                        '"error":"Database not reachable"}', 503, media_type="application/json")
    return Response('{"status":"ready"}', media_type="application/json")


@ops.get("/metrics")
def metrics() -> Response:
    """Prometheus text format (all worker processes when run with several)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        data = generate_latest(registry)
    else:
        data = generate_latest()
    return Response(data, media_type=CONTENT_TYPE_LATEST)


faults_router = APIRouter(prefix="/admin/faults", tags=["operator"], dependencies=[Operator])


@faults_router.post("")
def arm_fault(body: FaultIn) -> dict[str, Any]:
    """Arm a fault point (only when TICKETING_FAULT_INJECTION is set)."""
    from ticketing.kit.faults import faults

    registry = faults()
    if not registry.enabled:
        raise NotFound("Fault injection is disabled", code="not_found")
    if body.point not in KNOWN_POINTS:
        raise Invalid(f"Unknown fault point; known: {', '.join(KNOWN_POINTS)}", code="validation_error")
    registry.arm(body.point, body.times)
    return {"point": body.point, "times": body.times}


@faults_router.delete("")
def clear_faults() -> dict[str, Any]:
    """Disarm every fault point."""
    from ticketing.kit.faults import faults

    if faults().enabled:
        faults().clear()
    return {"cleared": True}


def create_app(settings: Settings | None = None, *, database: Database | None = None) -> FastAPI:
    """Build the service from `settings` (read from the environment when omitted)."""
    settings = settings or Settings()
    configure_logging(settings.log_format, settings.log_level)
    configure_faults(settings.fault_injection, Path(settings.fault_state_path))
    db = database or Database(settings.database_url, pool_size=settings.db_pool_size,
                              max_overflow=settings.db_max_overflow)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        if settings.expiry_interval_seconds > 0:
            threading.Thread(target=_expiry_loop, args=(db, settings.expiry_interval_seconds, stop),
                             name="order-expiry", daemon=True).start()
        log.info("app.started", database=db.dialect)
        yield
        stop.set()
        if database is None:
            db.dispose()

    app = ExpressApp(
        title="ticketing", version=__version__, lifespan=lifespan,
        description="Sells passes, takes payments through gateways, issues tickets exactly once. "
                    "Errors are `{\"error\", \"code\"}`; money is integer fen.",
        # The service's telemetry is its JSON logs and Prometheus metrics. FastAPI's own
        # OpenTelemetry hooks would otherwise ask for three global providers per request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.db = db
    install_error_handlers(app)
    for router in (order_router, payment_router, ticket_router):
        app.include_router(router, responses=error_responses(401, 403, 404, 409, 413, 422))
    for router in (tenant_admin, payment_admin, order_admin, notification_admin, ticket_admin,
                   faults_router):
        app.include_router(router, responses=error_responses(401, 404, 409, 413, 422))
    app.include_router(ops, responses=error_responses(503))
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes,
                       timeout=settings.body_timeout_seconds)
    app.add_middleware(RequestLogMiddleware)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` and worker processes."""
    return create_app(Settings())
