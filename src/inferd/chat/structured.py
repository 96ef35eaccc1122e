"""``response_format`` -> a grammar the engine constrains the output with, so it always parses and validates.

``text`` constrains nothing; ``json_object`` allows any JSON object; ``json_schema`` allows exactly the
values its schema accepts (``chat/grammar.py`` says which keywords; any other is a 400 naming it).
``strict`` is accepted either way and changes nothing here: inferd enforces every schema it accepts,
strict or not. Output cut short by ``max_tokens`` (``finish_reason: "length"``) is a prefix of valid JSON.
"""

from __future__ import annotations

from typing import Any

from ..engines.base import Constraint
from ..errors import InvalidRequest
from .grammar import UnsupportedSchema, any_object_grammar, schema_grammar

SCHEMA_PARAM = "response_format.json_schema.schema"


def response_constraint(response_format: dict[str, Any] | None) -> Constraint | None:
    if response_format is None or response_format["type"] == "text":
        return None
    if response_format["type"] == "json_object":
        return Constraint(grammar=any_object_grammar(), json_schema={"type": "object"})
    schema = response_format["json_schema"]["schema"]
    return Constraint(grammar=checked_grammar(schema, SCHEMA_PARAM), json_schema=schema)


def checked_grammar(schema: dict[str, Any], param: str) -> str:
    """The grammar of ``schema``; an unsupported feature is a 400 whose param is where it sits."""
    try:
        return schema_grammar(schema)
    except UnsupportedSchema as exc:
        raise InvalidRequest(str(exc), param=f"{param}.{exc.path}" if exc.path else param,
                             code="unsupported_schema") from None
    except RecursionError:
        raise InvalidRequest("The JSON schema nests too deeply.", param=param, code="unsupported_schema") from None
