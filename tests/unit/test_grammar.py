"""JSON schema -> GBNF: the rules it writes, and the keywords it refuses (with where they sit).

Whether the grammars constrain the real engine correctly is tested end to end (tests/e2e/test_structured.py).
"""

from __future__ import annotations

import re

import pytest

from inferd.chat.grammar import UnsupportedSchema, any_object_grammar, literal, schema_grammar
from inferd.chat.structured import response_constraint
from inferd.errors import InvalidRequest


def rules(grammar: str) -> dict[str, str]:
    return dict(line.split(" ::= ", 1) for line in grammar.strip().splitlines())


def referenced(grammar: str) -> set[str]:
    bodies = " ".join(rules(grammar).values())
    bodies = re.sub(r'"(\\.|[^"\\])*"', " ", bodies)  # drop literals
    bodies = re.sub(r"\[(\\.|[^\]\\])*\]", " ", bodies)  # and character classes
    return set(re.findall(r"[a-z][a-z0-9-]*", bodies))


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"a": {"type": "string", "maxLength": 3}, "b": {"type": ["integer", "null"]},
                                      "c": {"type": "array", "items": {"enum": ["x", 1, None]}, "minItems": 1}},
     "required": ["a"]},
    {"$defs": {"Node": {"type": "object", "properties": {"next": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]}},
                        "required": ["next"]}}, "$ref": "#/$defs/Node"},
    {"type": "object", "additionalProperties": {"type": "number"}},
    {"type": "string", "format": "date-time"}, {"const": {"k": [1, 2]}}, {}, True,
])
def test_every_rule_referenced_is_defined_and_root_comes_first(schema) -> None:
    grammar = schema_grammar(schema)
    assert grammar.startswith("root ::= ")
    assert referenced(grammar) <= set(rules(grammar)), referenced(grammar) - set(rules(grammar))


def test_properties_keep_their_order_and_required_ones_cannot_be_left_out() -> None:
    grammar = schema_grammar({"type": "object", "properties": {"b": {"type": "string"}, "a": {"type": "integer"}},
                              "required": ["b", "a"], "additionalProperties": False})
    root = rules(grammar)[rules(grammar)["root"]]
    assert root.index('"\\"b\\""') < root.index("rest")  # b first, a in the rest
    assert "?" not in rules(grammar)["value-root-rest-1"]  # a is required: no optional group


@pytest.mark.parametrize("schema,path", [
    ({"type": "object", "properties": {"age": {"type": "integer", "minimum": 0}}}, "properties.age.minimum"),
    ({"type": "string", "pattern": "^a+$"}, "pattern"),
    ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, "oneOf"),
    ({"type": "array", "items": {"type": "string", "format": "email"}}, "items.format"),
    ({"$ref": "https://example.com/schema.json"}, "$ref"),
    ({"allOf": [{"type": "string"}, {"maxLength": 3}]}, "allOf"),
    ({"type": "array", "uniqueItems": True}, "uniqueItems"),
    ({"type": "object", "properties": {"x": {"not": {"type": "null"}}}}, "properties.x.not"),
    ({"type": "date"}, "type"),
])
def test_unsupported_features_are_named_with_their_path(schema, path: str) -> None:
    with pytest.raises(UnsupportedSchema) as caught:
        schema_grammar(schema)
    assert caught.value.path == path


def test_response_format_errors_name_the_param() -> None:
    with pytest.raises(InvalidRequest) as caught:
        response_constraint({"type": "json_schema", "json_schema": {"name": "n", "strict": True, "schema": {
            "type": "object", "properties": {"tags": {"type": "array", "items": {"pattern": "x"}}}}}})
    assert caught.value.param == "response_format.json_schema.schema.properties.tags.items.pattern"
    assert caught.value.code == "unsupported_schema"


def test_text_constrains_nothing_and_json_object_takes_any_object() -> None:
    assert response_constraint({"type": "text"}) is None and response_constraint(None) is None
    constraint = response_constraint({"type": "json_object"})
    assert constraint is not None and constraint.grammar == any_object_grammar()
    assert rules(constraint.grammar)["root"] == "object"


def test_literals_escape_quotes_backslashes_and_newlines() -> None:
    assert literal('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"a": {"type": "string", "maxLength": 3}, "b": {"type": ["integer", "null"]}},
     "required": ["a"]},
    {"type": "object", "additionalProperties": {"type": "number"}},
    {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "boolean"}], "maxItems": 2}, {}, True,
])
def test_vllms_grammar_backend_takes_the_grammars(schema) -> None:
    """vLLM's default backend (xgrammar) parses what inferd writes; where it cannot, vLLM falls back to
    llguidance, which does not let a literal match a special token such as Qwen's <tool_call>. Runs where
    the vllm extra is installed (make test under CI, or VLLM=1)."""
    xgrammar = pytest.importorskip("xgrammar")
    from inferd.chat.grammar import Grammar
    from inferd.chat.tools.policies import TaggedJson

    xgrammar.Grammar.from_ebnf(schema_grammar(schema))
    tool = {"type": "function", "function": {"name": "f", "parameters": schema if isinstance(schema, dict) and
                                             schema.get("type") == "object" else {"type": "object"}}}
    xgrammar.Grammar.from_ebnf(TaggedJson().grammar([tool], None, True, Grammar()))
