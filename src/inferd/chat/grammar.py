"""JSON Schema -> GBNF: a grammar whose every complete output parses as JSON and validates against the schema.

GBNF is llama.cpp's grammar format (xgrammar, used by vLLM and SGLang, reads the same EBNF). The
supported subset is what a grammar can enforce exactly; any other keyword is refused with
``UnsupportedSchema`` naming its path, so a client never gets output that fails its own validator.

Supported: ``type`` (one or a list), ``enum``, ``const``, ``properties``, ``required``,
``additionalProperties`` (false, true or a schema), ``items``, ``prefixItems``, ``minItems``,
``maxItems``, ``minLength``, ``maxLength``, ``format`` (date, time, date-time, uuid), ``anyOf``,
``allOf`` with one schema, local ``$ref`` (``#/$defs/...``, ``#/definitions/...``, recursion included),
and annotations (``title``, ``description``, ``default``, ``examples``, ...). Properties come out in
schema order; an optional property may be left out; properties the schema does not list are never
written (a valid subset of what ``additionalProperties`` allows), except for maps (no ``properties``,
``additionalProperties`` a schema).
"""

from __future__ import annotations

import json
import re
from typing import Any

ANNOTATIONS = {"title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated",
               "readOnly", "writeOnly", "$defs", "definitions", "strict", "discriminator"}
KEYWORDS = {"type", "enum", "const", "properties", "required", "additionalProperties", "items", "prefixItems",
            "minItems", "maxItems", "minLength", "maxLength", "format", "anyOf", "allOf", "$ref", "uniqueItems"}
MAX_ITEMS = 256  # an upper bound the grammar can hold for minItems/maxItems/minLength/maxLength
# bounded: a small model cannot loop on whitespace forever; written without an empty alternative, which
# llama.cpp takes but xgrammar (vLLM's grammar backend) refuses
CALL_WS = r'( " " | "\n" [ ]{0,16} )?'

PRIMITIVES = {
    "ws": CALL_WS,
    "char": r'[^"\\\x7F\x00-\x1F] | [\\] (["\\/bfnrt] | "u" [0-9a-fA-F]{4})',
    "string": r'"\"" char* "\""',
    "integer": r'"-"? ([0-9] | [1-9] [0-9]{0,15})',
    "number": r'integer ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,3})?',
    "boolean": r'"true" | "false"',
    "null": r'"null"',
    "value": r'object | array | string | number | boolean | null',
    "object": r'"{" ws ( string ws ":" ws value ws ( "," ws string ws ":" ws value ws )* )? "}"',
    "array": r'"[" ws ( value ws ( "," ws value ws )* )? "]"',
}
DEPENDS = {"string": ("char",), "number": ("integer",), "value": ("object", "array", "string", "number", "boolean",
                                                                  "null"),
           "object": ("ws", "string", "value"), "array": ("ws", "value")}
FORMATS = {
    "date": r'"\"" [0-9]{4} "-" ( "0" [1-9] | "1" [0-2] ) "-" ( "0" [1-9] | [1-2] [0-9] | "3" [0-1] ) "\""',
    "time": r'"\"" ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{1,6} )? '
            r'( "Z" | [+-] ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ) "\""',
    "date-time": r'"\"" [0-9]{4} "-" ( "0" [1-9] | "1" [0-2] ) "-" ( "0" [1-9] | [1-2] [0-9] | "3" [0-1] ) "T" '
                 r'( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{1,6} )? '
                 r'( "Z" | [+-] ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ) "\""',
    "uuid": r'"\"" [0-9a-f]{8} "-" [0-9a-f]{4} "-" [0-9a-f]{4} "-" [0-9a-f]{4} "-" [0-9a-f]{12} "\""',
}


class UnsupportedSchema(ValueError):
    """A schema feature the grammar cannot enforce; ``path`` is where (``properties.age.minimum``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path


def literal(text: str) -> str:
    """A GBNF string literal matching exactly ``text``."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r") \
        .replace("\t", "\\t")
    return f'"{escaped}"'


def json_literal(value: Any) -> str:
    """The GBNF literal of a JSON value, written compactly."""
    return literal(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


class Grammar:
    """Rules added by name; ``text`` writes them with ``root`` first."""

    def __init__(self) -> None:
        self.rules: dict[str, str] = {}
        self._refs: dict[str, str] = {}

    def add(self, hint: str, body: str) -> str:
        name = re.sub(r"[^a-zA-Z0-9-]+", "-", hint).strip("-").lower() or "r"
        unique, k = name, 1
        while unique in self.rules or unique in PRIMITIVES:
            unique, k = f"{name}-{k}", k + 1
        self.rules[unique] = body
        return unique

    def primitive(self, name: str) -> str:
        if name not in self.rules:
            self.rules[name] = PRIMITIVES[name]
            for dependency in DEPENDS.get(name, ()):
                self.primitive(dependency)
        return name

    def text(self) -> str:
        self.primitive("ws")
        order = ["root"] + [name for name in self.rules if name != "root"]
        return "\n".join(f"{name} ::= {self.rules[name]}" for name in order) + "\n"

    def schema(self, schema: Any, root: dict[str, Any], path: str, hint: str) -> str:
        """The name of a rule that matches exactly the JSON values valid against ``schema``."""
        return SchemaRules(self, root).rule(schema, path, hint)

    def ref(self, target: str) -> str | None:
        return self._refs.get(target)

    def reserve_ref(self, target: str, hint: str) -> str:
        name = self.add(hint, '""')  # filled in once its schema is converted (recursion sees the name)
        self._refs[target] = name
        return name


class SchemaRules:
    def __init__(self, grammar: Grammar, root: dict[str, Any]) -> None:
        self.g = grammar
        self.root = root

    def rule(self, schema: Any, path: str, hint: str) -> str:
        if schema is True or schema == {}:
            return self.g.primitive("value")
        if not isinstance(schema, dict):
            raise UnsupportedSchema(path, f"'{path or 'schema'}' must be a JSON schema object.")
        unknown = sorted(set(schema) - KEYWORDS - ANNOTATIONS)
        if unknown:
            where = f"{path}.{unknown[0]}" if path else unknown[0]
            raise UnsupportedSchema(where, f"The JSON schema keyword '{unknown[0]}' (at '{where}') is not supported: "
                                           "inferd constrains output with a grammar and cannot enforce it.")
        return self.g.add(hint, self.body(schema, path, hint))

    def body(self, s: dict[str, Any], path: str, hint: str) -> str:
        at = (lambda key: f"{path}.{key}" if path else key)
        if "$ref" in s:
            return self._ref(s, at("$ref"), hint)
        if "allOf" in s:
            if not isinstance(s["allOf"], list) or len(s["allOf"]) != 1:
                raise UnsupportedSchema(at("allOf"), f"'{at('allOf')}' is supported with exactly one schema.")
            return self.rule(s["allOf"][0], at("allOf[0]"), hint)
        if "const" in s:
            return json_literal(s["const"])
        if "enum" in s:
            if not isinstance(s["enum"], list) or not s["enum"]:
                raise UnsupportedSchema(at("enum"), f"'{at('enum')}' must be a non-empty array.")
            return " | ".join(json_literal(v) for v in s["enum"])
        if "anyOf" in s:
            if not isinstance(s["anyOf"], list) or not s["anyOf"]:
                raise UnsupportedSchema(at("anyOf"), f"'{at('anyOf')}' must be a non-empty array.")
            base = {k: v for k, v in s.items() if k != "anyOf"}
            return " | ".join(self.rule({**base, **branch} if isinstance(branch, dict) else branch,
                                        at(f"anyOf[{i}]"), f"{hint}-{i}") for i, branch in enumerate(s["anyOf"]))
        types = s.get("type", list(TYPES))
        types = [types] if isinstance(types, str) else types
        if not isinstance(types, list) or not types or any(t not in TYPES for t in types):
            raise UnsupportedSchema(at("type"), f"'{at('type')}' must be one or more of {', '.join(TYPES)}.")
        return " | ".join(TYPES[t](self, s, path, hint) for t in types)

    def _ref(self, s: dict[str, Any], path: str, hint: str) -> str:
        target = s["$ref"]
        match = re.fullmatch(r"#/(\$defs|definitions)/([^/]+)", target) if isinstance(target, str) else None
        if match is None or match.group(2) not in (self.root.get(match.group(1)) or {}):
            raise UnsupportedSchema(path, f"'{path}': only local references to #/$defs/NAME or "
                                          f"#/definitions/NAME that exist are supported; got {target!r}.")
        known = self.g.ref(target)
        if known is not None:
            return known
        name = self.g.reserve_ref(target, f"def-{match.group(2)}")
        self.g.rules[name] = self.body(self.root[match.group(1)][match.group(2)], f"{match.group(1)}.{match.group(2)}",
                                       name)
        return name

    # one function per JSON type

    def string(self, s: dict[str, Any], path: str, hint: str) -> str:
        if s.get("format") is not None:
            if s["format"] not in FORMATS:
                where = f"{path}.format" if path else "format"
                raise UnsupportedSchema(where, f"'{where}': the string format {s['format']!r} is not supported "
                                               f"(supported: {', '.join(FORMATS)}).")
            return self.g.add(f"{hint}-{s['format']}", FORMATS[s["format"]])
        low, high = _bounds(s, "minLength", "maxLength", path)
        self.g.primitive("char")
        if low == 0 and high is None:
            return self.g.primitive("string")
        return f'"\\"" char{_repeat(low, high)} "\\""'

    def integer(self, s: dict[str, Any], path: str, hint: str) -> str:
        return self.g.primitive("integer")

    def number(self, s: dict[str, Any], path: str, hint: str) -> str:
        return self.g.primitive("number")

    def boolean(self, s: dict[str, Any], path: str, hint: str) -> str:
        return self.g.primitive("boolean")

    def null(self, s: dict[str, Any], path: str, hint: str) -> str:
        return self.g.primitive("null")

    def array(self, s: dict[str, Any], path: str, hint: str) -> str:
        at = (lambda key: f"{path}.{key}" if path else key)
        ws = self.g.primitive("ws")
        prefix = [self.rule(p, at(f"prefixItems[{i}]"), f"{hint}-p{i}") for i, p in enumerate(s.get("prefixItems", []))]
        item = self.rule(s.get("items", True), at("items"), f"{hint}-item") if s.get("items") is not False else None
        low, high = _bounds(s, "minItems", "maxItems", path)
        if s.get("uniqueItems") is True:
            raise UnsupportedSchema(at("uniqueItems"), f"'{at('uniqueItems')}' (true) is not supported.")
        if prefix:
            if low > len(prefix) or (item is not None and high != len(prefix)) and s.get("items") is not False:
                raise UnsupportedSchema(at("prefixItems"), f"'{at('prefixItems')}' is supported with "
                                                           "\"items\": false and no minItems above its length.")
            head = f' {ws} "," {ws} '.join(prefix)
            return f'"[" {ws} {head} {ws} "]"'
        assert item is not None
        if high == 0:
            return f'"[" {ws} "]"'
        more = "" if high == 1 else f'( "," {ws} {item} {ws} ){_repeat(max(low - 1, 0), None if high is None else high - 1)}'
        listed = f"{item} {ws} {more}".strip()
        return f'"[" {ws} {listed} "]"' if low >= 1 else f'"[" {ws} ( {listed} )? "]"'

    def object(self, s: dict[str, Any], path: str, hint: str) -> str:
        at = (lambda key: f"{path}.{key}" if path else key)
        ws = self.g.primitive("ws")
        properties = s.get("properties") or {}
        required = s.get("required") or []
        if not isinstance(properties, dict) or not isinstance(required, list):
            raise UnsupportedSchema(at("properties"), f"'{at('properties')}' must be an object and 'required' an array.")
        missing = [name for name in required if name not in properties]
        extra = s.get("additionalProperties", True)
        if missing and extra is False:
            raise UnsupportedSchema(at("required"), f"'{at('required')}' names '{missing[0]}', which 'properties' "
                                                    "does not define and additionalProperties forbids.")
        if not properties:
            if extra is False:
                return f'"{{" {ws} "}}"'
            value = self.rule(extra, at("additionalProperties"), f"{hint}-value")
            string = self.g.primitive("string")
            pair = f'{string} {ws} ":" {ws} {value} {ws}'
            return f'"{{" {ws} ( {pair} ( "," {ws} {pair} )* )? "}}"'
        pairs = [self._pair(name, self.rule(sub, at(f"properties.{name}"), f"{hint}-{name}"), ws)
                 for name, sub in properties.items()]
        optional = [name not in required for name in properties]
        return f'"{{" {ws} {self._members(pairs, optional, hint)} "}}"'

    def _pair(self, name: str, value: str, ws: str) -> str:
        return f'{literal(json.dumps(name, ensure_ascii=False))} {ws} ":" {ws} {value} {ws}'

    def _members(self, pairs: list[str], optional: list[bool], hint: str) -> str:
        """Properties in order, optional ones possibly left out, commas only between those written."""
        ws = self.g.primitive("ws")
        rest: list[str | None] = [None] * (len(pairs) + 1)  # rest[i]: a rule for i.. once something is written
        for i in range(len(pairs) - 1, -1, -1):
            item = f'"," {ws} {pairs[i]}'
            body = f"( {item} )?" if optional[i] else item
            rest[i] = self.g.add(f"{hint}-rest-{i}", f"{body} {rest[i + 1] or ''}".strip())
        first = ""  # nothing written yet: the first property written, then the rest
        for i in range(len(pairs) - 1, -1, -1):
            start = f"{pairs[i]} {rest[i + 1] or ''}".strip()
            first = f"( {start} | {first} )" if optional[i] and first else f"( {start} )?" if optional[i] else start
        return first


def _bounds(s: dict[str, Any], low_key: str, high_key: str, path: str) -> tuple[int, int | None]:
    low, high = s.get(low_key, 0), s.get(high_key)
    for key, value in ((low_key, low), (high_key, high)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_ITEMS):
            where = f"{path}.{key}" if path else key
            raise UnsupportedSchema(where, f"'{where}' must be an integer between 0 and {MAX_ITEMS}.")
    if high is not None and high < low:
        where = f"{path}.{high_key}" if path else high_key
        raise UnsupportedSchema(where, f"'{where}' is below {low_key}.")
    return low, high


def _repeat(low: int, high: int | None) -> str:
    if high is None:
        return "*" if low == 0 else "+" if low == 1 else f"{{{low},}}"
    return f"{{{low},{high}}}"


TYPES = {"string": SchemaRules.string, "integer": SchemaRules.integer, "number": SchemaRules.number,
         "boolean": SchemaRules.boolean, "null": SchemaRules.null, "array": SchemaRules.array,
         "object": SchemaRules.object}


def schema_grammar(schema: dict[str, Any]) -> str:
    """A whole grammar whose root is one JSON value valid against ``schema``."""
    grammar = Grammar()
    value = grammar.schema(schema, schema, "", "value-root")
    grammar.rules["root"] = value
    return grammar.text()


def any_object_grammar() -> str:
    """``response_format: json_object``: any JSON object."""
    grammar = Grammar()
    grammar.rules["root"] = grammar.primitive("object")
    return grammar.text()
