"""Every request: an `X-Request-ID`, one JSON log line with its ids, one histogram sample."""

from __future__ import annotations

import json
import re

import httpx

from tests.factories import CUSTOMER
from ticketing.migrate import upgrade


def _count(metrics: str, labels: str) -> float:
    """The histogram's sample count for one label set (0 if it has none)."""
    for line in metrics.splitlines():
        if line.startswith("ticketing_request_seconds_count{" + labels + "}"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_each_request_is_logged_timed_and_given_an_id(tmp_path, live_server_factory):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    upgrade(url)
    server = live_server_factory(url, workers=1, TICKETING_LOG_LEVEL="INFO")
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        before = c.get("/metrics").text  # the start-up probes of /healthz are in it
        given = c.get("/healthz", headers={"X-Request-ID": "trace-me-42"})
        assert given.headers["x-request-id"] == "trace-me-42"
        mine = c.get("/my/tickets", headers=CUSTOMER)
        assert mine.status_code == 200
        generated = mine.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", generated)
        refused = c.get("/my/tickets", headers={"X-Tenant-ID": "nobody-here",
                                                "Authorization": "Bearer user123"})
        assert refused.status_code == 404
        for _ in range(2):
            c.get("/healthz")
        # the express lane (api/express.py) logs and counts as the whole stack does
        notified = c.post("/payments/notify", headers={"X-Request-ID": "notify-1"},
                          json={"order_id": 10**9, "gateway_txn_id": "T-1", "status": "SUCCESS",
                                "amount": 1})
        assert notified.headers["x-request-id"] == "notify-1"
        after = c.get("/metrics").text
    for labels, added in (('method="GET",route="/healthz",status="2xx"', 3),
                          ('method="GET",route="/my/tickets",status="2xx"', 1),
                          ('method="GET",route="/my/tickets",status="4xx"', 1),
                          ('method="GET",route="/metrics",status="2xx"', 1),
                          ('method="POST",route="/payments/notify",'
                           f'status="{notified.status_code // 100}xx"', 1)):
        assert _count(after, labels) - _count(before, labels) == added, labels
    server.stop()
    lines = [json.loads(line) for line in server.log_path.read_text().splitlines()
             if line.startswith("{")]
    requests = {line["request_id"]: line for line in lines if line["event"] == "request"}
    assert requests["trace-me-42"]["path"] == "/healthz" and requests["trace-me-42"]["status"] == 200
    assert requests[generated]["tenant"] == "default" and requests[generated]["status"] == 200
    assert requests[refused.headers["x-request-id"]]["tenant"] == "nobody-here"
    assert requests[refused.headers["x-request-id"]]["status"] == 404
    assert (requests["notify-1"]["path"], requests["notify-1"]["status"]) == (
        "/payments/notify", notified.status_code)
    handled = [line for line in lines if line["event"] == "notification.handled"]
    assert handled and handled[-1]["request_id"] == "notify-1"


def test_fastapis_own_opentelemetry_hooks_stay_out_of_the_request_path(client, monkeypatch):
    """The service's telemetry is its logs and metrics; FastAPI's native OpenTelemetry is
    off, so a request never asks OpenTelemetry for its global providers."""
    from opentelemetry import _logs, metrics, trace

    asked: list[str] = []
    for module, name in ((trace, "get_tracer_provider"), (metrics, "get_meter_provider"),
                         (_logs, "get_logger_provider")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda real=real, name=name: (asked.append(name),
                                                                        real())[1])
    assert client.get("/my/tickets", headers=CUSTOMER).status_code == 200
    assert client.post("/payments/notify", json={}).status_code == 422
    assert asked == []
