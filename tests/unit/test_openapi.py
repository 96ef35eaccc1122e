"""The OpenAPI document states exactly the ranges the validators check: each bound is accepted, each
value past it refused, with the same validator function the server runs."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis

from inferd.api.openapi import document
from inferd.api.schemas import FIELDS, MEDIA_FIELDS
from inferd.errors import InvalidRequest
from inferd.library import load_library

DOC = document(load_library(None))
REQUEST = DOC["components"]["schemas"]["ChatRequest"]["properties"]
BOUNDED = [(name, check, REQUEST[name]) for name, check in FIELDS.items()
           if REQUEST[name].get("type") in ("number", "integer")]
VIDEO = DOC["components"]["schemas"]["ContentPart"]["oneOf"][2]["properties"]["video_url"]["properties"]


def accepts(check: Any, name: str, value: Any) -> bool:
    try:
        check(name, value)
    except InvalidRequest:
        return False
    return True


def test_every_validated_field_is_described() -> None:
    assert set(FIELDS) <= set(REQUEST)
    assert {"model", "messages", "stream", "stream_options", "max_completion_tokens"} <= set(REQUEST)


@pytest.mark.parametrize("name,check,schema", BOUNDED + [(f"video_url.{n}", c, VIDEO[n]) for n, c in
                                                          MEDIA_FIELDS["video_url"].items()],
                         ids=[b[0] for b in BOUNDED] + list(MEDIA_FIELDS["video_url"]))
def test_a_stated_range_is_the_checked_range(name: str, check: Any, schema: dict[str, Any]) -> None:
    step = 1 if schema["type"] == "integer" else 1e-9
    if "minimum" in schema:
        assert accepts(check, name, schema["minimum"]) and not accepts(check, name, schema["minimum"] - step)
    if "exclusiveMinimum" in schema:
        low = schema["exclusiveMinimum"]
        assert not accepts(check, name, low) and accepts(check, name, low + step)
    if "maximum" in schema:
        assert accepts(check, name, schema["maximum"]) and not accepts(check, name, schema["maximum"] + step)
    else:
        assert accepts(check, name, 10**12)  # no upper bound stated: none checked
    if "default" in schema:
        assert accepts(check, name, schema["default"])


@pytest.mark.parametrize("name", [n for n in FIELDS if "enum" in REQUEST[n]])
def test_a_stated_enum_is_the_checked_one(name: str) -> None:
    assert all(accepts(FIELDS[name], name, value) for value in REQUEST[name]["enum"])
    assert not accepts(FIELDS[name], name, "not-a-" + name)


def test_the_seed_defaults_are_stated() -> None:
    assert REQUEST["temperature"] == {"type": "number", "minimum": 0, "maximum": 2, "default": 1}
    assert REQUEST["top_p"]["default"] == 1 and REQUEST["reasoning_effort"]["default"] == "medium"
    assert REQUEST["stream"]["default"] is False
    assert REQUEST["top_k"] == {"type": "integer", "minimum": 0, "maximum": 100}
    assert REQUEST["repetition_penalty"]["exclusiveMinimum"] == 0 and REQUEST["repetition_penalty"]["maximum"] == 100


def test_the_document_loads_and_every_error_is_openai_shaped() -> None:
    schema = schemathesis.openapi.from_dict(DOC)
    assert len(list(schema.get_all_operations())) == 15
    for item in DOC["paths"].values():
        for op in item.values():
            for status, response in op["responses"].items():
                assert response["headers"]["X-Request-Id"]["required"] is True
                if int(status) >= 400 and op["operationId"] != "health":
                    assert response["content"] == {"application/json": {"schema": {
                        "$ref": "#/components/schemas/Error"}}}
