"""response_format on the real engine: grammar-constrained output always parses and validates."""

from __future__ import annotations

import json
from typing import Annotated, Literal, Optional

import httpx
import openai
import pytest
import pydantic
from pydantic import BaseModel, Field

from ..conftest import GEMMA, QWEN
from .patient import client, http  # noqa: F401 (fixtures)


class Address(BaseModel):
    city: Annotated[str, Field(max_length=16)]
    country_code: Annotated[str, Field(min_length=2, max_length=2)]


class Person(BaseModel):
    name: Annotated[str, Field(max_length=16)]
    age: int
    role: Literal["engineer", "artist", "doctor"]
    address: Address
    nickname: Optional[Annotated[str, Field(max_length=8)]]


ASK = [{"role": "user", "content": "Invent a person and describe them."}]


def test_parse_with_a_pydantic_model_twenty_runs_all_valid(client: openai.OpenAI) -> None:
    """20 samples (4 requests of n=5, temperature 1, different seeds): every one parses into the model."""
    people = []
    client = client.with_options(timeout=900)  # 20 constrained samples on a busy 2-core machine
    for seed in range(4):
        reply = client.chat.completions.parse(model=QWEN, messages=ASK, response_format=Person, n=5, seed=seed,
                                              temperature=1, max_tokens=120)
        for choice in reply.choices:
            assert choice.finish_reason == "stop", choice.message.content
            assert isinstance(choice.message.parsed, Person), choice.message.content
            people.append(choice.message.parsed)
    assert len(people) == 20
    assert len({p.model_dump_json() for p in people}) > 1  # sampled, not one answer repeated


def test_json_object_is_an_object_on_both_models(client: openai.OpenAI) -> None:
    for model in (QWEN, GEMMA):
        reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "A cat as JSON."}],
                                               response_format={"type": "json_object"}, temperature=0, max_tokens=60,
                                               stop=["@@"])
        choice = reply.choices[0]
        if choice.finish_reason == "stop":
            assert isinstance(json.loads(choice.message.content), dict), choice.message.content
        else:  # cut by max_tokens: still the beginning of an object
            assert choice.message.content.lstrip().startswith("{")


def test_a_schema_with_enums_arrays_maps_and_nulls(client: openai.OpenAI) -> None:
    schema = {"type": "object", "additionalProperties": False, "required": ["scores", "tags", "ok", "note"],
              "properties": {"scores": {"type": "object", "additionalProperties": {"type": "integer"}},
                             "tags": {"type": "array", "items": {"enum": ["a", "b", 3]}, "minItems": 2, "maxItems": 2},
                             "ok": {"type": "boolean"}, "note": {"type": ["string", "null"], "maxLength": 10}}}
    for model in (QWEN, GEMMA):
        reply = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Rate three fruits."}], temperature=0, max_tokens=120,
            response_format={"type": "json_schema", "json_schema": {"name": "rating", "schema": schema, "strict": True}})
        value = json.loads(reply.choices[0].message.content)
        assert set(value) == {"scores", "tags", "ok", "note"}
        assert all(isinstance(v, int) and not isinstance(v, bool) for v in value["scores"].values())
        assert len(value["tags"]) == 2 and set(value["tags"]) <= {"a", "b", 3}
        assert isinstance(value["ok"], bool) and (value["note"] is None or len(value["note"]) <= 10)


def test_streamed_structured_output_is_the_same_json(client: openai.OpenAI, http: httpx.Client) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "p", "schema": Person.model_json_schema()}}
    body = {"model": QWEN, "messages": ASK, "temperature": 0, "max_tokens": 120, "response_format": fmt}
    whole = http.post("/api/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]
    text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(stream=True, **body)
                   if c.choices)
    assert text == whole
    Person.model_validate_json(text)


def test_a_schema_feature_the_grammar_cannot_enforce_is_refused(http: httpx.Client) -> None:
    class Bounded(BaseModel):
        age: Annotated[int, Field(ge=0)]
    fmt = openai.lib._pydantic.to_strict_json_schema(Bounded)
    response = http.post("/api/v1/chat/completions", json={
        "model": QWEN, "messages": ASK, "max_tokens": 5,
        "response_format": {"type": "json_schema", "json_schema": {"name": "b", "schema": fmt, "strict": True}}})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "response_format.json_schema.schema.properties.age.minimum"
    assert error["code"] == "unsupported_schema" and "minimum" in error["message"]
    assert pydantic.__version__  # the client's own pydantic made the schema
