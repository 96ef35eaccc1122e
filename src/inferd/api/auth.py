"""Bearer authentication: runs before the body is read; one 401 body for every failure."""

from __future__ import annotations

from starlette.requests import Request

from ..errors import AuthenticationFailed, PermissionDenied
from ..provider.gate import store_unavailable
from ..provider.keyring import KeyVerifier
from ..store import KeyRecord, StoreUnavailable


async def authenticate(request: Request, verifier: KeyVerifier) -> KeyRecord:
    """The request's API key, or AuthenticationFailed (missing, malformed, unknown, revoked, disabled, expired)."""
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret or len(secret) > 256:
        raise AuthenticationFailed()
    try:
        key = await verifier.verify(secret)
    except StoreUnavailable as exc:
        raise store_unavailable(exc) from None
    if key is None:
        raise AuthenticationFailed()
    request.state.key_hash = key.hash  # the access line shows its first characters, never the key
    return key


async def authenticate_management(request: Request, verifier: KeyVerifier) -> KeyRecord:
    key = await authenticate(request, verifier)
    if not key.management:
        raise PermissionDenied("Only a management key can manage keys (create one with "
                               "'inferd keys create --management --name NAME').")
    return key
