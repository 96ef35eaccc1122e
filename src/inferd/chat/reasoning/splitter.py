"""Split a streamed answer into reasoning and content at the family's markers.

Text arrives in arbitrary pieces, so a marker may be cut anywhere (``</thi`` + ``nk>``). The
splitter holds back only what could still become a marker, and the whitespace that separates
reasoning from the answer, and releases everything else at once.
"""

from __future__ import annotations

from enum import Enum

Segment = tuple[str, str]  # ("reasoning" | "content", text)


class State(Enum):
    LEADING = "leading"  # nothing seen yet but whitespace: reasoning may still start
    REASONING = "reasoning"
    AFTER_END = "after_end"  # the end marker is through; skipping whitespace and content headers
    CONTENT = "content"


class MarkerSplitter:
    """``start`` opens the reasoning, ``end`` closes it; ``headers`` are dropped where content begins."""

    def __init__(self, start: str, end: str, *, opened: bool, headers: tuple[str, ...] = ()) -> None:
        self._start, self._end, self._headers = start, end, headers
        self._opened = opened  # the prompt opened the reasoning; the output may or may not repeat the marker
        self.state = State.LEADING
        self.reasoned = False  # True once reasoning text came out
        self.entered = False  # True once the reasoning section began (even if empty)
        self._buffer = ""

    @property
    def phase(self) -> State:
        """Where the model is: LEADING counts as REASONING when the prompt opened it."""
        return State.REASONING if self.state is State.LEADING and self._opened else self.state

    def feed(self, text: str) -> list[Segment]:
        self._buffer += text
        out: list[Segment] = []
        while self._buffer:
            before = (self.state, len(self._buffer))
            self._step(out)
            if (self.state, len(self._buffer)) == before:
                break  # waiting for more text
        return out

    def finish(self) -> list[Segment]:
        """The stream ended: release what was held back (a partial marker is plain text)."""
        rest, self._buffer = self._buffer, ""
        if self.phase is State.REASONING:
            rest = rest.strip() if not self.reasoned else rest.rstrip()
            self.reasoned = self.reasoned or bool(rest)
            return [("reasoning", rest)] if rest else []
        if self.state is State.LEADING and rest.strip():
            return [("content", rest.strip())]
        return [("content", rest)] if rest and self.state is State.CONTENT else []

    def _step(self, out: list[Segment]) -> None:
        if self.state is State.LEADING:
            self._leading(out)
        elif self.state is State.REASONING:
            self._reasoning(out)
        elif self.state is State.AFTER_END:
            self._after_end()
        else:
            out.append(("content", self._buffer))
            self._buffer = ""

    def _leading(self, out: list[Segment]) -> None:
        text = self._buffer.lstrip()
        if not text:
            return
        if text.startswith(self._start):
            self._buffer, self.state, self.entered = text[len(self._start):], State.REASONING, True
        elif self._start.startswith(text):
            return  # may still become the start marker
        elif self._opened:
            self._buffer, self.state, self.entered = text, State.REASONING, True
        elif any(h.startswith(text) or text.startswith(h) for h in self._headers):
            self._buffer, self.state = text, State.AFTER_END  # content announced by a header, no reasoning
        else:
            self._buffer, self.state = text, State.CONTENT

    def _reasoning(self, out: list[Segment]) -> None:
        index = self._buffer.find(self._end)
        if index >= 0:
            self._emit_reasoning(out, self._buffer[:index].rstrip())
            self._buffer = self._buffer[index + len(self._end):]
            self.state = State.AFTER_END
            return
        head = self._buffer[:len(self._buffer) - _partial_suffix(self._buffer, self._end)]
        head = head.rstrip()  # whitespace before the end marker is not part of the reasoning
        self._emit_reasoning(out, head)
        self._buffer = self._buffer[len(head):]

    def _emit_reasoning(self, out: list[Segment], text: str) -> None:
        if not self.reasoned:
            text = text.lstrip()
        if text:
            self.reasoned = True
            out.append(("reasoning", text))

    def _after_end(self) -> None:
        text = self._buffer.lstrip()
        if not text:
            self._buffer = ""
            return
        for header in self._headers:
            if text.startswith(header):
                self._buffer = text[len(header):]
                return
            if header.startswith(text):
                self._buffer = text
                return  # may still be a header
        self._buffer, self.state = text, State.CONTENT


class PlainSplitter:
    """For models that do not reason: everything is content."""

    state = phase = State.CONTENT
    reasoned = entered = False

    def feed(self, text: str) -> list[Segment]:
        return [("content", text)] if text else []

    def finish(self) -> list[Segment]:
        return []


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest end of ``text`` that is a proper beginning of ``marker``."""
    for size in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0
