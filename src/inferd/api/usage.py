"""GET /api/v1/usage: a key's own usage, or every key's for a management key; JSON or CSV."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import InvalidRequest, NotFound
from ..provider.gate import store_unavailable
from ..provider.reports import FORMATS, parse_query, shown, to_csv
from ..store import KeyRecord, StoreUnavailable
from ..store.keys import key_by_hash
from ..store.reports import report
from .auth import authenticate


async def usage_report(request: Request) -> Response:
    state = request.app.state
    key = await authenticate(request, state.verifier)
    params = request.query_params
    fmt = params.get("format", "json")
    if fmt not in FORMATS:
        raise InvalidRequest(f"'format' must be one of {', '.join(FORMATS)}; got {fmt!r}.", param="format")
    store = state.provider.store
    try:
        key_id = await _key_filter(request, key)
        query = parse_query(params, key_id)
        rows = [shown(r) for r in await store.read(report, query)]
    except StoreUnavailable as exc:
        raise store_unavailable(exc) from None
    if fmt == "csv":
        return Response(to_csv(query, rows), media_type="text/csv; charset=utf-8")
    return JSONResponse({"data": rows, "group_by": list(query.group_by), "from": params.get("from"),
                         "to": params.get("to")})


async def _key_filter(request: Request, key: KeyRecord) -> int | None:
    """An ordinary key sees only itself; a management key everything, or one key by ``key=<hash>``."""
    wanted = request.query_params.get("key")
    if not key.management:
        if wanted not in (None, key.hash):
            raise NotFound("No key with that hash is visible to this key.", param="key")
        return key.id
    if wanted is None:
        return None
    found = await request.app.state.provider.store.read(key_by_hash, wanted)
    if found is None:
        raise NotFound(f"No key with hash '{wanted[:80]}'.", param="key")
    return found.id


def usage_routes(prefix: str) -> list[Route]:
    return [Route(f"{prefix}/usage", usage_report, methods=["GET"])]
