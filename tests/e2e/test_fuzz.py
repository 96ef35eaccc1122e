"""The fuzzing gate: schemathesis against the document the server itself serves at /openapi.json.

Every operation gets at least CASES generated cases, valid and invalid, with a valid key (a management
key for the key management routes, an ordinary key elsewhere) and without one: never a 5xx, and every
response conforms to the document (a documented status, its content type, its headers such as
X-Request-Id, its body schema: the OpenAI error shape for errors). The server serves the tiny random
model, so valid completions take milliseconds; the test process and the server are network-guarded to
loopback, so a generated media URL can reach nothing (the server's own SSRF guard refuses it first).
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import httpx
import hypothesis
import pytest
import requests
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (content_type_conformance, response_headers_conformance,
                                               response_schema_conformance, status_code_conformance)

from ..edge_client import TINY, tiny_library
from ..harness import Server, guarded_env, inferd, library_server

CASES = 100
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("fuzz")
    with library_server(folder, models_dir, tiny_library(folder), guarded_env()) as srv:
        yield srv


@pytest.fixture(scope="module")
def served(fuzzed: Server) -> dict[str, Any]:
    return httpx.get(f"{fuzzed.url}/openapi.json", timeout=30).json()


@pytest.fixture(scope="module")
def schema(served: dict[str, Any]) -> schemathesis.schemas.BaseSchema:
    raw = {**served, "components": {**served["components"], "schemas": dict(served["components"]["schemas"])}}
    request = raw["components"]["schemas"]["ChatRequest"]
    # valid requests name the test server's model, so that they really generate (unknown models are fuzzed
    # by the invalid-input runs and by GET /models/{model_id}); the served document names it too
    assert TINY in request["properties"]["model"]["description"]
    raw["components"]["schemas"]["ChatRequest"] = {**request, "properties": {**request["properties"],
                                                                             "model": {"const": TINY}}}
    return schemathesis.openapi.from_dict(raw)


@pytest.fixture(scope="module")
def keys(fuzzed: Server) -> dict[str, str]:
    management = inferd("keys", "create", "--name", "fuzz-admin", "--management", env=fuzzed.env)
    return {"ordinary": fuzzed.create_key("fuzz-user"), "management": management.stdout.strip().splitlines()[-1]}


def operations(document: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(method, path, takes input) of every operation in the served document."""
    return [(method.upper(), path, bool(op.get("parameters") or op.get("requestBody")))
            for path, item in document["paths"].items() for method, op in item.items()]


def test_the_document_describes_every_route(served: dict[str, Any]) -> None:
    described = {(m, p) for m, p, _ in operations(served)}
    api = "/api/v1"
    assert described == {("POST", f"{api}/chat/completions"), ("GET", f"{api}/models"),
                         ("GET", f"{api}/models/{{model_id}}"), ("POST", f"{api}/keys"), ("GET", f"{api}/keys"),
                         ("GET", f"{api}/keys/{{hash}}"), ("PATCH", f"{api}/keys/{{hash}}"),
                         ("DELETE", f"{api}/keys/{{hash}}"), ("GET", f"{api}/key"), ("GET", f"{api}/usage"),
                         ("GET", "/health"), ("GET", "/metrics"), ("GET", "/openapi.json"), ("GET", "/"),
                         ("GET", "/console/{name}")}
    temperature = served["components"]["schemas"]["ChatRequest"]["properties"]["temperature"]
    assert temperature == {"type": "number", "minimum": 0, "maximum": 2, "default": 1}


# the same list the served document gives (checked above); invalid input only where there is input
ROUTES = [("POST", "/api/v1/chat/completions", True), ("GET", "/api/v1/models", False),
          ("GET", "/api/v1/models/{model_id}", True), ("POST", "/api/v1/keys", True), ("GET", "/api/v1/keys", True),
          ("GET", "/api/v1/keys/{hash}", True), ("PATCH", "/api/v1/keys/{hash}", True),
          ("DELETE", "/api/v1/keys/{hash}", True), ("GET", "/api/v1/key", False), ("GET", "/api/v1/usage", True),
          ("GET", "/health", False), ("GET", "/metrics", False), ("GET", "/openapi.json", False),
          ("GET", "/", False), ("GET", "/console/{name}", True)]
RUNS = [(m, p, mode) for m, p, has_input in ROUTES for mode in GenerationMode if has_input or mode.is_positive]


def least_cases(op: dict[str, Any], mode: GenerationMode) -> int:
    """CASES, or fewer where fewer distinct valid requests exist: 1 without input, every value of an enum."""
    params = op.get("parameters", [])
    if not params and "requestBody" not in op:
        return 1
    if mode.is_positive and "requestBody" not in op and all("enum" in p["schema"] for p in params):
        return min(CASES, math.prod(len(p["schema"]["enum"]) for p in params))
    return CASES


@pytest.mark.parametrize("method,path,mode", RUNS, ids=[f"{m} {p} {mode.value}" for m, p, mode in RUNS])
@pytest.mark.parametrize("with_key", [True, False], ids=["key", "no-key"])
def test_every_response_conforms_and_none_is_a_5xx(fuzzed: Server, schema: schemathesis.schemas.BaseSchema,
                                                   served: dict[str, Any], keys: dict[str, str], method: str,
                                                   path: str, mode: GenerationMode, with_key: bool) -> None:
    key = keys["management" if "/keys" in path else "ordinary"]
    headers = {"Authorization": f"Bearer {key}"} if with_key else {}
    statuses: Counter[int] = Counter()
    operation = schema[path][method]
    with requests.Session() as session:
        @hypothesis.settings(max_examples=CASES, deadline=None, database=None, derandomize=True,
                             suppress_health_check=list(hypothesis.HealthCheck),
                             phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate])
        @hypothesis.given(case=operation.as_strategy(mode))
        def run(case: schemathesis.Case) -> None:
            response = case.call(base_url=fuzzed.url, session=session, headers=headers, timeout=60)
            statuses[response.status_code] += 1
            case.validate_response(response, checks=CHECKS, headers=headers)

        run()
    print(f"{method} {path}, {mode.value} input, {'with' if with_key else 'without'} a key: "
          f"{sum(statuses.values())} cases, statuses {dict(sorted(statuses.items()))}")
    assert sum(statuses.values()) >= least_cases(served["paths"][path][method.lower()], mode)
    if with_key and mode.is_positive and "{hash}" not in path:  # a generated hash names no key: 404
        assert any(200 <= s < 300 for s in statuses), statuses  # valid input with a valid key gets through
    assert fuzzed.is_healthy()
