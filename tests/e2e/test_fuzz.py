"""The fuzzing gate: schemathesis against the API's schema (tests/openapi.json until the server serves
/openapi.json), at least CASES generated cases per operation, with and without a key: never a 5xx,
and every 4xx JSON answer in the OpenAI error shape. The server serves the tiny random model, so valid
requests generate in milliseconds; the test process and the server stay on loopback (network guard)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Iterator

import hypothesis
import pytest
import requests
import schemathesis
from schemathesis.generation.modes import GenerationMode

from ..edge_client import TINY, tiny_library
from ..harness import Server, library_server

SCHEMA = Path(__file__).resolve().parent.parent / "openapi.json"
NETGUARD_SITE = Path(__file__).resolve().parent.parent / "netguard_site"
CASES = 200
OPERATIONS = [("POST", "/api/v1/chat/completions"), ("GET", "/api/v1/models"), ("GET", "/api/v1/models/{model_id}"),
              ("GET", "/health")]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("fuzz")
    env = {"INFERD_TEST_NETGUARD": "1", "PYTHONPATH": str(NETGUARD_SITE)}
    with library_server(folder, models_dir, tiny_library(folder), env) as srv:
        yield srv


@pytest.fixture(scope="module")
def schema() -> schemathesis.schemas.BaseSchema:
    raw = json.loads(SCHEMA.read_text())
    # valid requests name the test server's model, so that they really generate (unknown models are
    # fuzzed by the invalid-input runs and by GET /models/{model_id})
    raw["components"]["schemas"]["ChatRequest"]["properties"]["model"] = {"const": TINY}
    return schemathesis.openapi.from_dict(raw)


def check(response: schemathesis.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    content_type = (response.headers.get("content-type") or [""])[0]
    if response.status_code >= 400 and content_type.startswith("application/json"):
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"], error


# /health takes no input: there is no invalid input to generate for it
RUNS = [(m, p, mode) for m, p in OPERATIONS for mode in GenerationMode if not (p == "/health" and mode.is_negative)]


@pytest.mark.parametrize("method,path,mode", RUNS, ids=[f"{m} {p} {mode.value}" for m, p, mode in RUNS])
@pytest.mark.parametrize("with_key", [True, False], ids=["key", "no-key"])
def test_no_generated_request_gets_a_5xx(fuzzed: Server, schema: schemathesis.schemas.BaseSchema, method: str,
                                         path: str, mode: GenerationMode, with_key: bool) -> None:
    headers = {"Authorization": f"Bearer {fuzzed.create_key()}"} if with_key else {}
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
            check(response)

        run()
    print(f"{method} {path}, {mode.value} input, {'with' if with_key else 'without'} a key: "
          f"{sum(statuses.values())} cases, "
          f"statuses {dict(sorted(statuses.items()))}")
    if path != "/health":  # /health takes no input: every generated case is the same request
        assert sum(statuses.values()) >= CASES
    assert fuzzed.is_healthy()
