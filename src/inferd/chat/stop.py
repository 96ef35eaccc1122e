"""Stop strings across stream chunks: the stop text never reaches the client.

The engine is told the stop strings too (so it ends the generation and its slot at once); this filter
is inferd's own guarantee on top, for every engine: text that could be the beginning of a stop string
is held back until the next chunk shows whether it is one; a match cuts the content before it.
"""

from __future__ import annotations


class StopFilter:
    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._held = ""
        self.matched = False

    def feed(self, text: str) -> str:
        """The part of everything fed so far that can go out now; after a match, nothing more."""
        if self.matched or not self._stops:
            return "" if self.matched else text
        buffer = self._held + text
        cut = min((at for at in (buffer.find(s) for s in self._stops) if at >= 0), default=-1)
        if cut >= 0:
            self.matched, self._held = True, ""
            return buffer[:cut]
        keep = max(_partial(buffer, s) for s in self._stops)
        self._held = buffer[len(buffer) - keep:] if keep else ""
        return buffer[:len(buffer) - keep]

    def flush(self) -> str:
        """At the end of the output: held text that never became a stop string."""
        held, self._held = self._held, ""
        return "" if self.matched else held

    @property
    def holding(self) -> bool:
        return bool(self._held)


def _partial(text: str, stop: str) -> int:
    """Length of the longest end of ``text`` that is a proper beginning of ``stop``."""
    for k in range(min(len(text), len(stop) - 1), 0, -1):
        if text.endswith(stop[:k]):
            return k
    return 0
