"""The key management API (OpenRouter's shape): /keys for management keys, /key for any key."""

from __future__ import annotations

from typing import Any, Awaitable, Callable, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import Conflict, InvalidRequest, NotFound
from ..provider.gate import store_unavailable
from ..provider.keyspec import key_data, parse_key_fields
from ..provider.periods import all_periods
from ..store import Duplicate, KeyRecord, StoreUnavailable
from ..store.backend import Tx
from ..store.keys import insert_key, key_by_hash, list_keys, revoke, update_key
from ..store.ledger import counters
from .auth import authenticate, authenticate_management
from .body import read_json

T = TypeVar("T")
PAGE_MAX = 100
OFFSET_MAX = 10**9  # past the database's integers: an offset beyond any key list


async def _db(call: Awaitable[T]) -> T:
    try:
        return await call
    except StoreUnavailable as exc:
        raise store_unavailable(exc) from None
    except Duplicate:
        raise Conflict("A key with this name already exists; names are unique.", param="name") from None


def _data(tx: Tx, key: KeyRecord, now: float) -> dict[str, Any]:
    return key_data(key, counters(tx, key.id, all_periods(now)))


def _shown(tx: Tx, key: KeyRecord | None, now: float) -> dict[str, Any] | None:
    return _data(tx, key, now) if key is not None and key.revoked_at is None else None


async def create_key(request: Request) -> Response:
    state = request.app.state
    await authenticate_management(request, state.verifier)
    fields, management = parse_key_fields(await read_json(request, 64 * 1024), state.library, creating=True)
    now = state.provider.clock.now()
    name = fields.pop("name")

    def create(tx: Tx) -> tuple[dict[str, Any], str]:
        key, secret = insert_key(tx, name, fields, now, management)
        return _data(tx, key, now), secret

    data, secret = await _db(state.provider.store.write(create))
    return JSONResponse({"data": data, "key": secret}, status_code=201)


async def get_keys(request: Request) -> Response:
    state = request.app.state
    await authenticate_management(request, state.verifier)
    offset = _query_int(request, "offset", 0, 0, OFFSET_MAX)
    limit = _query_int(request, "limit", PAGE_MAX, 1, PAGE_MAX)
    include_disabled = request.query_params.get("include_disabled", "true").lower() != "false"
    now = state.provider.clock.now()

    def page(tx: Tx) -> list[dict[str, Any]]:
        keys = list_keys(tx, offset, limit, include_revoked=False)
        return [_data(tx, k, now) for k in keys if include_disabled or not k.disabled]

    return JSONResponse({"data": await _db(state.provider.store.read(page)), "offset": offset, "limit": limit})


def _query_int(request: Request, name: str, default: int, low: int, high: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < low or (high is not None and int(raw) > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise InvalidRequest(f"'{name}' must be an integer {bound}; got {raw!r}.", param=name)
    return int(raw)


async def one_key(request: Request) -> Response:
    state = request.app.state
    await authenticate_management(request, state.verifier)
    digest, now = request.path_params["hash"], state.provider.clock.now()
    if request.method == "GET":
        found = await _db(state.provider.store.read(lambda tx: _shown(tx, key_by_hash(tx, digest), now)))
    elif request.method == "DELETE":
        deleted = await _db(state.provider.store.write(lambda tx: revoke(tx, now=now, digest=digest)))
        found = {"deleted": True} if deleted else None
    else:
        fields, _ = parse_key_fields(await read_json(request, 64 * 1024), state.library, creating=False)
        found = await _db(state.provider.store.write(lambda tx: _shown(tx, update_key(tx, digest, fields, now), now)))
    if found is None:
        raise NotFound(f"No key with hash '{digest[:80]}'.", param="hash")
    return JSONResponse(found if request.method == "DELETE" else {"data": found})


async def current_key(request: Request) -> Response:
    state = request.app.state
    key = await authenticate(request, state.verifier)
    now = state.provider.clock.now()
    return JSONResponse({"data": await _db(state.provider.store.read(_data, key, now))})


def key_routes(prefix: str) -> list[Route]:
    handlers: list[tuple[str, Callable[[Request], Awaitable[Response]], list[str]]] = [
        ("/keys", create_key, ["POST"]), ("/keys", get_keys, ["GET"]),
        ("/keys/{hash}", one_key, ["GET", "PATCH", "DELETE"]), ("/key", current_key, ["GET"])]
    return [Route(prefix + path, handler, methods=methods) for path, handler, methods in handlers]
