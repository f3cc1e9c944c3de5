"""Prometheus metrics the service exports at /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

NOTIFICATIONS = Counter(
    "ticketing_notifications_total",
    "Payment notifications received, by gateway and outcome.",
    ["gateway", "outcome"],
)
TICKETS_ISSUED = Counter("ticketing_tickets_issued_total", "Tickets issued.")
ORDERS_CREATED = Counter("ticketing_orders_created_total", "Orders placed.")
ORDERS_EXPIRED = Counter("ticketing_orders_expired_total", "Unpaid orders closed on expiry.")
REQUEST_SECONDS = Histogram(
    "ticketing_request_seconds",
    "HTTP request latency by route template and status class.",
    ["method", "route", "status"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
