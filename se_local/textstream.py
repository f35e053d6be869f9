"""Turning a stream of token bytes into text that is safe to show.

Two problems sit between the sampler and the screen:

* A token is a run of bytes, not of characters: a multi-byte UTF-8 character may be
  split over two or more tokens. An incremental decoder keeps the incomplete tail.
* Stop strings may span tokens. Text that could be the start of a stop string is held
  back until the next token shows whether it is; a stop string itself is never emitted.

:class:`TextStream` does both, with no model in sight, so it is tested on its own.
"""

from __future__ import annotations

import codecs
from typing import Optional, Sequence, Tuple

__all__ = ["TextStream"]


class TextStream:
    """Incremental UTF-8 decoding with stop strings.

    Args:
        stop: strings that end generation when they appear in the text; they are not
            emitted. Default ``()``: none. Empty strings are ignored.

    Example:
        >>> s = TextStream(stop=["\\n\\n"])
        >>> s.push("caf\\xc3".encode("latin-1"))
        ('caf', False)
        >>> s.push(b"\\xa9!\\n\\nrest")
        ('é!', True)
    """

    def __init__(self, stop: Sequence[str] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stop = tuple(s for s in stop if s)
        self._held = ""  # decoded text not yet emitted (a possible stop-string start)
        self.stopped = False
        """Whether a stop string was found; nothing more is emitted after it."""

    def push(self, data: bytes) -> Tuple[str, bool]:
        """Add the bytes of one token.

        Args:
            data: the token's bytes.

        Returns:
            ``(text, stopped)``: the text that is now safe to emit (possibly ``""``) and
            whether a stop string was reached (then ``text`` is what preceded it).
        """
        if self.stopped:
            return "", True
        self._held += self._decoder.decode(data, final=False)
        return self._release(final=False)

    def flush(self) -> str:
        """End of generation: the rest of the text, with incomplete bytes as U+FFFD."""
        if self.stopped:
            return ""
        self._held += self._decoder.decode(b"", final=True)
        text, _ = self._release(final=True)
        return text

    # -----------------------------------------------------------------------

    def _release(self, *, final: bool) -> Tuple[str, bool]:
        cut = self._find_stop(self._held)
        if cut is not None:
            text, self._held, self.stopped = self._held[:cut], "", True
            return text, True
        keep = 0 if final else self._possible_stop_start(self._held)
        split = len(self._held) - keep
        text, self._held = self._held[:split], self._held[split:]
        return text, False

    def _find_stop(self, text: str) -> Optional[int]:
        """Index of the earliest stop string in ``text``, or ``None``."""
        hits = [i for i in (text.find(s) for s in self._stop) if i >= 0]
        return min(hits) if hits else None

    def _possible_stop_start(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
        longest = 0
        for s in self._stop:
            for n in range(min(len(s) - 1, len(text)), longest, -1):
                if text.endswith(s[:n]):
                    longest = n
                    break
        return longest
