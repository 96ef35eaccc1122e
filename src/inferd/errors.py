"""The APIError tree: each class carries its HTTP status and OpenAI error type/code.

Exactly one place (``render``) turns an error into the OpenAI wire shape.
"""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    status: int = 500
    type: str = "server_error"
    code: str | None = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class InvalidRequest(APIError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_value"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class UnsupportedParameter(InvalidRequest):
    code = "unsupported_parameter"


class PayloadTooLarge(APIError):
    status = 413
    type = "invalid_request_error"
    code = "payload_too_large"


class RequestTimeout(APIError):
    """The request head or body did not arrive in time (the HTTP edge closes the connection after it)."""

    status = 408
    type = "invalid_request_error"
    code = "request_timeout"


class URITooLong(APIError):
    status = 414
    type = "invalid_request_error"
    code = "uri_too_long"


class HeadersTooLarge(APIError):
    status = 431
    type = "invalid_request_error"
    code = "headers_too_large"


class MalformedRequest(APIError):
    """Not parseable as HTTP/1.1 (the HTTP edge answers it and closes the connection)."""

    status = 400
    type = "invalid_request_error"
    code = "malformed_http"


class AuthenticationFailed(APIError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"

    def __init__(self) -> None:
        super().__init__(
            "Missing or invalid API key. Send 'Authorization: Bearer <key>'; create a key with "
            "'inferd keys create --name NAME'.",
            headers={"WWW-Authenticate": "Bearer"},
        )


class MetricsAuthFailed(APIError):
    """GET /metrics without the metrics token (or, when none is configured, from a non-loopback client)."""

    status = 401
    type = "invalid_request_error"
    code = "invalid_metrics_token"

    def __init__(self, token_configured: bool) -> None:
        super().__init__(
            "Missing or wrong metrics token: send 'Authorization: Bearer <INFERD_METRICS_TOKEN>'." if token_configured
            else "Metrics are served to loopback clients only; set INFERD_METRICS_TOKEN to scrape from elsewhere.",
            headers={"WWW-Authenticate": "Bearer"})


class NotFound(APIError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class PermissionDenied(APIError):
    """A valid key asking for something its kind of key may not do (management vs ordinary)."""

    status = 403
    type = "invalid_request_error"
    code = "permission_denied"


class Conflict(APIError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class QuotaExceeded(APIError):
    """The key's spend limit or token limit for its period is used up: 402 (as OpenRouter), so that
    clients do not retry it as they retry a 429; it clears at the period's reset or with a raised limit."""

    status = 402
    type = "insufficient_quota"
    code = "insufficient_quota"


class RateLimited(APIError):
    """Over a rate limit (requests or tokens per minute, concurrent requests): retry after ``Retry-After``.

    ``type`` is the limit hit, ``requests`` or ``tokens``, as OpenAI's API reports it."""

    status = 429
    type = "requests"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, kind: str, headers: dict[str, str]) -> None:
        super().__init__(message, headers=headers)
        self.type = kind


class MethodNotAllowed(APIError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class Unavailable(APIError):
    """Temporarily unable to serve: the client should retry after ``Retry-After`` seconds."""

    status = 503
    type = "server_error"
    code = "server_overloaded"

    def __init__(self, message: str, *, retry_after: int = 1, code: str | None = None) -> None:
        super().__init__(message, code=code, headers={"Retry-After": str(retry_after)})


class TooManyConnections(Unavailable):
    code = "too_many_connections"


class EngineFailure(APIError):
    status = 502
    type = "server_error"
    code = "engine_error"


class GatewayTimeout(APIError):
    """An engine or upstream server stopped answering within its timeout."""

    status = 504
    type = "server_error"
    code = "upstream_timeout"


class ModelSourceError(Exception):
    """A model file could not be assembled or verified (raised at start-up, not per request)."""


def internal_error() -> APIError:
    return APIError("The server hit an internal error; it has been logged.")
