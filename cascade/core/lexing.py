"""The scanner the two small languages share (pipeline strings and filters)."""

from __future__ import annotations

import re
from typing import Callable


def scan(text: str, pattern: re.Pattern[str], error: Callable[[str, int, str], Exception]) -> list[tuple[str, str, int]]:
    """(kind, text, position) of each token of ``text`` matched by ``pattern``'s named groups,
    then ("end", "", len(text)); ``error(text, position, message)`` is raised at the first
    character no group matches."""
    tokens, pos = [], 0
    end = len(text.rstrip())  # trailing whitespace ends the text (one pass, so linear time)
    while pos < end:
        m = pattern.match(text, pos)
        if m is None or m.end() == pos:
            bad = next(i for i in range(pos, end) if not text[i].isspace())
            raise error(text, bad, f"unexpected character {text[bad]!r}")
        kind = m.lastgroup or "word"
        tokens.append((kind, m.group(kind), m.start(kind)))
        pos = m.end()
    tokens.append(("end", "", len(text)))
    return tokens
