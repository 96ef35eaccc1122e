"""HTTP routes: authenticate, read, validate, hand to the chat service, encode."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..chat.reasoning.styles import DEFAULT_BUDGETS, FALLBACK_EFFORT
from ..chat.service import ChatService, Completion
from ..engines.pool import EnginePool
from ..library import Library, ModelSpec
from ..provider.gate import visible_spec
from .auth import authenticate
from .body import read_json
from .keys import key_routes
from .metrics import scrape
from .openapi import openapi_json
from .usage import usage_routes
from .schemas import parse_chat_request
from .sse import ClientGone, EventStreamResponse, events, until_disconnect, within


async def chat_completions(request: Request) -> Response:
    state = request.app.state
    key = await authenticate(request, state.verifier)
    body = await read_json(request, state.settings.max_body_bytes)
    # for the metrics: a library id, else the request counts under no model
    request.state.model_name = body.get("model") if isinstance(body, dict) else None
    chat = parse_chat_request(body)
    service: ChatService = state.service
    try:
        if chat.stream:
            completion = await until_disconnect(request.receive, service.prepare(key, chat))
            return await stream(request, completion, chat.include_usage, state.settings.sse_keepalive)
        completion = await until_disconnect(request.receive, service.start(key, chat))
    except ClientGone:
        return Response(status_code=499)
    try:
        body = await until_disconnect(request.receive, completion.body())
    except ClientGone:
        return Response(status_code=499)
    finally:
        await completion.aclose()  # idempotent; covers a body that never started
    return JSONResponse(body, headers=completion.headers)


async def stream(request: Request, completion: Completion, include_usage: bool, patience: float) -> Response:
    """SSE. Errors before the first delta are proper statuses if it comes within ``patience`` seconds;
    past that (a queue, a long prefill) the stream is committed with 200 and keep-alive comments."""
    opening = asyncio.ensure_future(completion.open())
    if await within(request.receive, opening, patience):
        opening.result()  # an error raises here, before any output
        return EventStreamResponse(events(completion.chunks(include_usage)), completion.headers,
                                   on_close=completion.aclose, keepalive=patience)

    async def close() -> None:  # the opening may still be waiting if the response never got to send
        opening.cancel()
        await asyncio.wait({opening})
        if not opening.cancelled():
            opening.exception()  # seen: an error of an opening that no event reported is not logged as lost
        await completion.aclose()

    return EventStreamResponse(events(completion.chunks(include_usage), opening), completion.headers,
                               on_close=close, keepalive=patience)


def model_card(spec: ModelSpec) -> dict[str, Any]:
    return {
        "id": spec.id, "object": "model", "created": spec.created, "owned_by": spec.owned_by,
        "context_length": spec.context_length, "pricing": spec.pricing.card(),
        "architecture": {"input_modalities": list(spec.input_modalities), "output_modalities": ["text"]},
        "supported_parameters": list(spec.supported_parameters),
        "reasoning": _reasoning_card(spec),
    }


def _reasoning_card(spec: ModelSpec) -> dict[str, Any] | None:
    """Whether the model reasons, and what each reasoning_effort does on it."""
    if not spec.reasoning.reasons:
        return None
    budgets = {**DEFAULT_BUDGETS, **spec.reasoning_budgets}
    return {"style": spec.reasoning.name, "default_effort": spec.defaults.get("reasoning_effort", FALLBACK_EFFORT),
            "efforts": spec.reasoning.honoured_efforts(budgets)}


async def list_models(request: Request) -> Response:
    key = await authenticate(request, request.app.state.verifier)
    library: Library = request.app.state.library
    return JSONResponse({"object": "list", "data": [model_card(spec) for spec in library if key.allows(spec.id)]})


async def get_model(request: Request) -> Response:
    key = await authenticate(request, request.app.state.verifier)
    return JSONResponse(model_card(visible_spec(key, request.app.state.library, request.path_params["model_id"])))


async def health(request: Request) -> Response:
    pool: EnginePool = request.app.state.pool
    report = pool.health()
    # degraded: some model is restarting while the others serve
    return JSONResponse(report, status_code=200 if report["status"] in ("ready", "degraded") else 503)


def routes() -> list[Route]:
    table = []
    for prefix in ("/api/v1", "/v1"):
        table += [
            Route(f"{prefix}/chat/completions", chat_completions, methods=["POST"]),
            Route(f"{prefix}/models", list_models, methods=["GET"]),
            Route(f"{prefix}/models/{{model_id:path}}", get_model, methods=["GET"]),
        ] + key_routes(prefix) + usage_routes(prefix)
    return table + [Route("/health", health, methods=["GET"]), Route("/metrics", scrape, methods=["GET"]),
                    Route("/openapi.json", openapi_json, methods=["GET"])]

