"""Unit tests of the token-to-text plumbing of the llama.cpp engine (pure logic)."""

import pytest

from smallfirst.engines.text import StopMatcher, Utf8Decoder

pytestmark = pytest.mark.fast


def run(stops: tuple[str, ...], pieces: list[str]) -> tuple[str, bool]:
    m = StopMatcher(stops)
    out = []
    for piece in pieces:
        text, hit = m.feed(piece)
        out.append(text)
        if hit:
            return "".join(out), True
    return "".join(out) + m.flush(), False


def test_stop_across_pieces_never_leaks() -> None:
    assert run(("END",), ["ab", "cE", "N", "Dxyz"]) == ("abc", True)
    assert run(("\n\n", "###"), ["one\n", "\ntwo"]) == ("one", True)


def test_partial_match_released_when_it_turns_out_not_to_be_a_stop() -> None:
    m = StopMatcher(("END",))
    assert m.feed("aE") == ("a", False)
    assert m.feed("Nx") == ("ENx", False)
    assert run(("END",), ["aEN"]) == ("aEN", False)


def test_no_stops_is_passthrough() -> None:
    assert run((), ["a", "b"]) == ("ab", False)


def test_earliest_stop_wins() -> None:
    assert run(("c", "b"), ["abc"]) == ("a", True)


def test_utf8_split_across_tokens() -> None:
    data = "héllo ✓".encode()
    d = Utf8Decoder()
    out = "".join(d.feed(data[i : i + 1]) for i in range(len(data)))
    assert out + d.flush() == "héllo ✓"


def test_invalid_bytes_do_not_stall() -> None:
    d = Utf8Decoder()
    assert d.feed(b"\xff\xfe\xfdabc").endswith("abc")
