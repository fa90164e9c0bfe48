"""Text going out of an in-process model: token bytes to UTF-8, and stop sequences held back.

Tokens end mid-character and a stop sequence may arrive split over several tokens, so both
in-process engines pass each token's bytes through a :class:`Utf8Decoder` and the text
through a :class:`StopMatcher` before a client sees any of it.

This module knows nothing of models or requests.
"""

from __future__ import annotations

__all__ = ["StopMatcher", "Utf8Decoder"]


class StopMatcher:
    """Streams text through, holding back any tail that could begin a stop sequence."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Return (text safe to emit, whether a stop sequence was hit)."""
        if not self.stops:
            return text, False
        buf = self.pending + text
        hits = [i for i in (buf.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.pending = ""
            return buf[: min(hits)], True
        hold = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(buf)), hold, -1):
                if buf.endswith(stop[:n]):
                    hold = n
                    break
        self.pending = buf[len(buf) - hold :] if hold else ""
        return buf[: len(buf) - hold], False

    def flush(self) -> str:
        text, self.pending = self.pending, ""
        return text


class Utf8Decoder:
    """Turns token bytes into text without splitting a multi-byte character."""

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> str:
        self.buf += data
        # A UTF-8 sequence is at most 4 bytes: try to decode, keeping up to 3 trailing bytes.
        for cut in range(4):
            end = len(self.buf) - cut
            try:
                text = self.buf[:end].decode("utf-8")
            except UnicodeDecodeError:
                continue
            self.buf = self.buf[end:]
            return text
        text, self.buf = self.buf.decode("utf-8", errors="replace"), b""
        return text

    def flush(self) -> str:
        text, self.buf = self.buf.decode("utf-8", errors="replace"), b""
        return text
