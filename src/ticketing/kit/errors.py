"""Typed errors: services raise them, one handler renders them as `{"error", "code"}`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorOut(BaseModel):
    """The body of every error answer."""

    error: str
    code: str


class TicketingError(Exception):
    """Base of every error the service reports to a client."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The JSON body sent to the client."""
        return {"error": self.message, "code": self.code, **self.extra}


class Unauthorized(TicketingError):
    status_code = 401
    code = "unauthorized"


class Forbidden(TicketingError):
    status_code = 403
    code = "forbidden"


class NotFound(TicketingError):
    status_code = 404
    code = "not_found"


class Conflict(TicketingError):
    status_code = 409
    code = "conflict"


class Invalid(TicketingError):
    status_code = 422
    code = "validation_error"


class PayloadTooLarge(TicketingError):
    status_code = 413
    code = "payload_too_large"


class GatewayError(TicketingError):
    """A payment gateway refused or could not be reached."""

    status_code = 502
    code = "gateway_error"


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the error bodies a route can answer with."""
    described = {401: "missing or bad credentials", 403: "not allowed for this role",
                 404: "unknown, or another tenant's", 409: "conflicts with recorded state",
                 413: "request body too large", 422: "invalid input", 500: "not processed; retry",
                 502: "the payment gateway failed", 503: "not ready"}
    return {s: {"model": ErrorOut, "description": described.get(s, "error")} for s in statuses}
