"""Bearer authentication: runs before the body is read; one 401 body for every failure."""

from __future__ import annotations

from starlette.requests import Request

from ..errors import AuthenticationFailed
from ..store.keys import KeyVerifier


def authenticate(request: Request, verifier: KeyVerifier) -> int:
    """The id of the request's API key, or AuthenticationFailed (missing, malformed, unknown, revoked)."""
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret or len(secret) > 256:
        raise AuthenticationFailed()
    key_id = verifier.verify(secret)
    if key_id is None:
        raise AuthenticationFailed()
    return key_id
