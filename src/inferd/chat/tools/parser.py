"""Streaming parser for tool calls written as JSON objects ``{"name": ..., "arguments": {...}}``, between a
family's markers (``<tool_call>`` ... ``</tool_call>``) or bare (the whole message is the call).

Text outside calls is content. Text that may still become a marker is held back until it cannot.
A call's name goes out once it is known (and a tool of that name exists), its arguments in pieces as
the model writes them; a call that does not parse, or names no given tool, is given back as content.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field

from ...engines.base import ToolCallDelta

HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*"([A-Za-z0-9_-]{1,64})"\s*,\s*"arguments"\s*:\s*(?=[{])')
FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)


def call_id() -> str:
    return "call_" + secrets.token_hex(12)


@dataclass
class Output:
    content: str = ""
    calls: list[ToolCallDelta] = field(default_factory=list)


class ArgumentScanner:
    """Where a JSON value that starts the text ends (depth counting, strings and escapes respected)."""

    def __init__(self) -> None:
        self.depth = 0
        self.in_string = False
        self.escaped = False

    def feed(self, text: str) -> int | None:
        """Characters of ``text`` that belong to the value; None while it is still open."""
        for i, ch in enumerate(text):
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif ch == "\\":
                    self.escaped = True
                elif ch == '"':
                    self.in_string = False
                continue
            if ch == '"':
                self.in_string = True
            elif ch in "{[":
                self.depth += 1
            elif ch in "}]":
                self.depth -= 1
                if self.depth == 0:
                    return i + 1
        return None


class ToolCallParser:
    def __init__(self, names: set[str], start: str, end: str, bare_json: bool, parallel: bool) -> None:
        self._names, self._start, self._end = names, start, end
        self._bare_json, self._parallel = bare_json, parallel
        self._buffer = ""
        self._mode = "text"  # text | bare | call | arguments | trailer
        self._written = False  # content has been written (a bare call must be the whole message)
        self._count = 0
        self._scanner: ArgumentScanner | None = None

    @property
    def has_calls(self) -> bool:
        return self._count > 0

    def feed(self, text: str) -> Output:
        self._buffer += text
        out = Output()
        while self._step(out):
            pass
        return out

    def _step(self, out: Output) -> bool:
        """One move of the state machine; True while there is more to do with the buffer."""
        return getattr(self, f"_{self._mode}")(out)

    def _text(self, out: Output) -> bool:
        if self._bare_json and not self._written and self._buffer.lstrip()[:1] in ("{", "`", "["):
            self._mode = "bare"
            return False
        if self._start:
            at = self._buffer.find(self._start)
            if at >= 0:
                self._emit(out, self._buffer[:at])
                self._buffer, self._mode = self._buffer[at + len(self._start):], "call"
                return True
            keep = _partial(self._buffer, self._start)
        else:
            keep = 0
        if not self._bare_json or self._written or self._buffer.strip():
            self._emit(out, self._buffer[:len(self._buffer) - keep])
            self._buffer = self._buffer[len(self._buffer) - keep:]
        return False

    def _emit(self, out: Output, text: str) -> None:
        if text:
            out.content += text
            self._written = self._written or bool(text.strip())

    def _bare(self, out: Output) -> bool:
        return False  # the whole message decides: see finish()

    def _call(self, out: Output) -> bool:
        match = HEAD.match(self._buffer)
        if match and match.group(1) in self._names and (self._parallel or self._count == 0):
            self._announce(out, match.group(1))
            self._buffer, self._mode, self._scanner = self._buffer[match.end():], "arguments", ArgumentScanner()
            return True
        if self._end and self._end in self._buffer:  # a call of another shape: parsed whole
            body, _, rest = self._buffer.partition(self._end)
            self._whole(out, body, self._start + body + self._end)
            self._buffer, self._mode = rest, "text"
            return True
        return False

    def _announce(self, out: Output, name: str) -> None:
        out.calls.append(ToolCallDelta(index=self._count, id=call_id(), name=name))
        self._count += 1

    def _arguments(self, out: Output) -> bool:
        assert self._scanner is not None
        used = self._scanner.feed(self._buffer)
        piece = self._buffer if used is None else self._buffer[:used]
        if piece:
            out.calls.append(ToolCallDelta(index=self._count - 1, arguments=piece))
        self._buffer = "" if used is None else self._buffer[used:]
        if used is None:
            return False
        self._mode = "trailer"
        return True

    def _trailer(self, out: Output) -> bool:
        """After the arguments: the rest of the call up to the end marker is dropped."""
        if not self._end:
            self._buffer, self._mode = "", "text"
            return False
        at = self._buffer.find(self._end)
        if at < 0:
            return False
        self._buffer, self._mode = self._buffer[at + len(self._end):].lstrip("\n"), "text"
        return True

    def _whole(self, out: Output, body: str, raw: str) -> None:
        """A complete call written in one piece (or bare): emitted if it is one, else content."""
        calls = _parse_calls(body, self._names)
        if calls is None:
            self._emit(out, raw)
            return
        for name, arguments in calls[:None if self._parallel else max(1 - self._count, 0)]:
            self._announce(out, name)
            out.calls.append(ToolCallDelta(index=self._count - 1, arguments=arguments))

    def finish(self) -> Output:
        """The end of the output: what is still held back is resolved."""
        out = Output()
        rest, self._buffer = self._buffer, ""
        if self._mode == "bare":
            fenced = FENCE.match(rest)
            self._whole(out, fenced.group(1) if fenced else rest, rest)
        elif self._mode == "call":
            self._whole(out, rest, self._start + rest)
        elif self._mode == "text":
            self._emit(out, rest)
        return out


def _parse_calls(text: str, names: set[str]) -> list[tuple[str, str]] | None:
    """``{"name", "arguments"}`` objects (one, several in a row, or a list), every name a given tool;
    arguments as a JSON string. Calls the output was cut off in (``max_tokens``) are left out, and so are
    exact repeats (small models repeat a call). None if the text holds no call, or anything else."""
    values, decoder, at, end = [], json.JSONDecoder(), 0, len(text.rstrip())
    while at < end:
        try:
            value, at = decoder.raw_decode(text, at + len(text[at:]) - len(text[at:].lstrip()))
        except ValueError:
            if not values or text[at:].strip()[:1] not in ("{", "["):
                return None
            break  # a call cut short at the end
        values.extend(value if isinstance(value, list) else [value])
    calls: list[tuple[str, str]] = []
    for item in values:
        call = _call(item, names)
        if call is None:
            return None
        if call not in calls:
            calls.append(call)
    return calls or None


def _call(item: object, names: set[str]) -> tuple[str, str] | None:
    if not isinstance(item, dict) or item.get("name") not in names:
        return None
    arguments = item.get("arguments", item.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    if not isinstance(arguments, dict):
        return None
    return item["name"], json.dumps(arguments, ensure_ascii=False)


def _partial(text: str, marker: str) -> int:
    """Length of the longest end of ``text`` that begins ``marker`` (it may still become the marker)."""
    for k in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-k:]):
            return k
    return 0
