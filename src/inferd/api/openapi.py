"""GET /openapi.json: the OpenAPI 3.1 document of this server, built from its validators and its library.

Every route is described once under /api/v1 (the same routes answer under /v1). Error responses are
OpenAI's shape (``Error``), listed with each status the route can answer.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from importlib.metadata import PackageNotFoundError, version
from ..library import Library
from ..provider.reports import FORMATS
from ..web.routes import TYPES, assets
from .keys import OFFSET_MAX, PAGE_MAX
from .openapi_schemas import Schema, components, ref

API = "/api/v1"
ERRORS = {400: "Invalid request (the param is named) or malformed HTTP.",
          401: "Missing or invalid API key.", 402: "The key's spend or token limit for its period is used up.",
          403: "This kind of key may not do this (management keys administer keys; others call models).",
          404: "No such model, key or route.", 409: "A key with this name exists.",
          413: "The body is over the size limit.", 429: "Over a rate limit: retry after Retry-After.",
          502: "The engine failed.", 503: "Loading, at capacity, draining, or the database is unavailable: retry "
                                          "after Retry-After.", 504: "The engine or upstream timed out."}
REQUEST_ID = {"X-Request-Id": {"description": "Yours (1-128 of A-Z a-z 0-9 - _ . :) or a new one.",
                               "required": True, "schema": {"type": "string", "minLength": 1, "maxLength": 128}}}


def json_content(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def responses(ok: dict[int, tuple[str, dict[str, Any]]], *codes: int) -> dict[str, Any]:
    out = {str(status): {"description": text, "headers": REQUEST_ID, **({"content": content} if content else {})}
           for status, (text, content) in ok.items()}
    for code in codes:
        out[str(code)] = {"description": ERRORS[code], "headers": REQUEST_ID, "content": json_content(ref("Error"))}
    return out


def operation(op_id: str, summary: str, ok: dict[int, tuple[str, dict[str, Any]]], *codes: int,
              body: str | None = None, params: list[dict[str, Any]] | None = None,
              security: list[dict[str, list[str]]] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": op_id, "summary": summary,
                          "security": [{"bearer": []}] if security is None else security,
                          "responses": responses(ok, *codes)}
    if body is not None:
        op["requestBody"] = {"required": True, "content": json_content(ref(body))}
    if params:
        op["parameters"] = params
    return op


def query(name: str, schema: Schema, description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            **({"description": description} if description else {})}


def path(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}, "description": description}


def chat_paths(models: list[str]) -> dict[str, Any]:
    ok = {200: ("A completion; server-sent events (ChatCompletionChunk data, then [DONE]) when stream is true.",
                {**json_content(ref("ChatCompletion")), "text/event-stream": {"schema": {"type": "string"}}})}
    model_id = {**path("model_id", "A model id (may hold '/')."), "examples": {m: {"value": m} for m in models}}
    return {
        f"{API}/chat/completions": {"post": operation(
            "createChatCompletion", "Generate a chat completion", ok, 400, 401, 402, 403, 404, 413, 429, 502, 503,
            504, body="ChatRequest")},
        f"{API}/models": {"get": operation("listModels", "The models this key may call",
                                           {200: ("The Model Library.", json_content(ref("ModelList")))}, 401, 503)},
        f"{API}/models/{{model_id}}": {"get": operation(
            "getModel", "One model", {200: ("The model.", json_content(ref("Model")))}, 401, 404, 503,
            params=[model_id])},
    }


def key_paths() -> dict[str, Any]:
    one = {200: ("The key.", json_content(ref("KeyResponse")))}
    digest = [path("hash", "The key's hash (as listed; never its secret).")]
    page = [query("offset", {"type": "integer", "minimum": 0, "maximum": OFFSET_MAX, "default": 0}),
            query("limit", {"type": "integer", "minimum": 1, "maximum": PAGE_MAX, "default": PAGE_MAX}),
            query("include_disabled", {"type": "string", "default": "true"}, "'false' leaves disabled keys out.")]
    manage = (400, 401, 403, 503)
    return {
        f"{API}/keys": {
            "post": operation("createKey", "Create a key (management keys)",
                              {201: ("The key and its secret, shown once.", json_content(ref("KeyCreated")))},
                              *manage, 409, 413, body="KeyCreate"),
            "get": operation("listKeys", "List keys (management keys)",
                             {200: ("A page of keys.", json_content(ref("KeyList")))}, *manage, params=page)},
        f"{API}/keys/{{hash}}": {
            "get": operation("getKey", "One key (management keys)", one, *manage, 404, params=digest),
            "patch": operation("updateKey", "Change a key's name, limits, models or disabled flag", one, *manage,
                               404, 409, 413, body="KeyUpdate", params=digest),
            "delete": operation("deleteKey", "Delete a key for good",
                                {200: ("Deleted.", json_content(ref("KeyDeleted")))}, *manage, 404, params=digest)},
        f"{API}/key": {"get": operation("currentKey", "The calling key", one, 401, 503)},
    }


def usage_paths() -> dict[str, Any]:
    when = {"type": "string", "description": "A UTC date (2026-11-01) or an ISO 8601 UTC time."}
    params = [query("from", when, "Inclusive."), query("to", when, "Exclusive."), query("model", {"type": "string"}),
              query("key", {"type": "string"}, "A key's hash (management keys; others see only themselves)."),
              query("group_by", {"type": "string", "default": "day"}, "day, model, key (comma-separated), or none."),
              query("format", {"enum": list(FORMATS), "default": "json"})]
    ok = {200: ("Usage rows (CSV with format=csv).",
                {**json_content(ref("UsageReport")), "text/csv": {"schema": {"type": "string"}}})}
    return {f"{API}/usage": {"get": operation("getUsage", "Usage by day, model and key", ok, 400, 401, 404, 503,
                                              params=params)}}


def open_paths() -> dict[str, Any]:
    health = {200: ("Ready, or degraded (some model restarting).", json_content(ref("Health"))),
              503: ("Loading, failed or draining.", json_content(ref("Health")))}
    metrics = {200: ("Prometheus text format.", {"text/plain": {"schema": {"type": "string"}}})}
    document = {200: ("This document.", json_content({"type": "object"}))}
    return {
        "/health": {"get": operation("health", "Engines' state", health, security=[])},
        "/metrics": {"get": operation("metrics", "Prometheus metrics (loopback clients, or the metrics token)",
                                      metrics, 401, security=[{}, {"metricsToken": []}])},
        "/openapi.json": {"get": operation("openapi", "This document", document, security=[])},
    }


def _version() -> str:
    try:
        return version("inferd")
    except PackageNotFoundError:  # run from a source tree
        return "0.0.0"


def console_paths() -> dict[str, Any]:
    """The console's page and its static files (web/routes.py); 304 answers a matching If-None-Match."""
    unchanged = {304: ("Not modified (If-None-Match matched the ETag).", {})}
    page = {200: ("The console's page.", {"text/html": {"schema": {"type": "string"}}}), **unchanged}
    files = {200: ("A console file.", {kind.partition(";")[0]: {"schema": {"type": "string"}}
                                       for kind in TYPES.values()}), **unchanged}
    name = {**path("name", "A console file's name (any other name: 404)."),
            "schema": {"enum": sorted(assets())}}
    return {"/": {"get": operation("console", "The browser console", page, security=[])},
            "/console/{name}": {"get": operation("consoleFile", "A console file", files, 404, params=[name],
                                                 security=[])}}


def document(library: Library) -> dict[str, Any]:
    models = [spec.id for spec in library]
    return {
        "openapi": "3.1.0",
        "info": {"title": "inferd", "version": _version(),
                 "description": "Self-hosted OpenAI-style inference API. Every path under /api/v1 is also served "
                                "under /v1. Errors are OpenAI's shape; every response carries X-Request-Id."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                           "metricsToken": {"type": "http", "scheme": "bearer",
                                                            "description": "INFERD_METRICS_TOKEN"}},
                       "schemas": components(models)},
        "paths": {**chat_paths(models), **key_paths(), **usage_paths(), **open_paths(), **console_paths()},
    }


async def openapi_json(request: Request) -> Response:
    state = request.app.state
    if getattr(state, "openapi", None) is None:
        state.openapi = document(state.library)
    return JSONResponse(state.openapi)

