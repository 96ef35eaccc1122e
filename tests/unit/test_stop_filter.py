"""The stop filter holds back what may become a stop string, at every split of the text into chunks."""

from __future__ import annotations

import itertools

import pytest

from inferd.chat.stop import StopFilter

TEXT = "The sea is wide. END of the poem. END again"


def run(chunks: list[str], stops: tuple[str, ...]) -> tuple[str, bool, list[str]]:
    stop = StopFilter(stops)
    outs = [stop.feed(c) for c in chunks]
    outs.append(stop.flush())
    return "".join(outs), stop.matched, outs


def splits(text: str, parts: int):
    for cuts in itertools.combinations(range(1, len(text)), parts - 1):
        bounds = (0, *cuts, len(text))
        yield [text[a:b] for a, b in zip(bounds, bounds[1:])]


@pytest.mark.parametrize("parts", [1, 2, 3])
def test_every_split_cuts_before_the_stop_string(parts: int) -> None:
    text = "wide. END of"
    for chunks in splits(text, parts):
        out, matched, _ = run(chunks, ("END",))
        assert (out, matched) == ("wide. ", True), chunks


def test_a_partial_match_is_released_when_it_does_not_complete() -> None:
    out, matched, outs = run(["The E", "N", "ormous end"], ("END",))
    assert (out, matched) == ("The ENormous end", False)
    assert outs[0] == "The " and outs[1] == ""  # "E", then "EN" held back until "o" shows it is no stop


def test_the_earliest_of_several_stops_wins_and_nothing_follows() -> None:
    out, matched, outs = run(["a poem", ". END", " more"], ("poem.", "END"))
    assert (out, matched) == ("a ", True) and outs[-2:] == ["", ""]


def test_without_stops_text_passes_untouched() -> None:
    assert run(["a", "b"], ())[0] == "ab"


def test_held_text_at_the_end_is_flushed() -> None:
    assert run(["it was EN"], ("END",)) == ("it was EN", False, ["it was ", "EN"])
