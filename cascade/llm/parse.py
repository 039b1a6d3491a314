"""Reading a permutation out of a listwise answer, with repair.

A model asked for ``[3] > [1] > [2]`` may answer with other digits (full-width ``３``, Arabic-Indic
``٣``), repeat an identifier, name one that does not exist, stop early or say something else.
:func:`parse_ranking` keeps the first mention of each valid identifier in order, appends the
ones it never named in their original order, and reports ``ok`` (a clean permutation),
``repaired`` (something was dropped or appended) or ``failed`` (no valid identifier at all:
the original order is kept).

>>> parse_ranking("[2] > [3] > [1]", 3)
([1, 2, 0], 'ok')
>>> parse_ranking("[２] > [2] > [9]", 3)
([1, 0, 2], 'repaired')
>>> parse_ranking("I cannot rank these.", 3)
([0, 1, 2], 'failed')
>>> parse_ranking("[B] > [A]", 3, letters=True)
([1, 0, 2], 'repaired')
"""

from __future__ import annotations

import re
import unicodedata

NUMBER = re.compile(r"\d+")
LETTER = re.compile(r"\[\s*([A-Za-z])\s*\]|\b([A-Z])\b")


def _ascii_digits(text: str) -> str:
    """Every Unicode decimal digit (full-width, Arabic-Indic, Devanagari...) as its ASCII digit."""
    return "".join(str(unicodedata.decimal(ch)) if ch.isdecimal() and not ch.isascii() else ch for ch in text)


def label(i: int, letters: bool = False) -> str:
    """The identifier of position ``i`` (0-based): ``1, 2, ...`` or ``A, B, ...``."""
    return chr(ord("A") + i) if letters else str(i + 1)


def _mentions(text: str, letters: bool) -> list[int]:
    text = unicodedata.normalize("NFKC", _ascii_digits(text))
    if letters:
        return [ord((a or b).upper()) - ord("A") for a, b in LETTER.findall(text)]
    return [int(m) - 1 for m in NUMBER.findall(text)]


def parse_ranking(text: str, n: int, letters: bool = False) -> tuple[list[int], str]:
    """(0-based positions best first, a permutation of ``range(n)``; ``ok``/``repaired``/``failed``)."""
    mentions = _mentions(text, letters)
    seen: list[int] = []
    for m in mentions:
        if 0 <= m < n and m not in seen:
            seen.append(m)
    if not seen:
        return list(range(n)), "failed"
    clean = len(seen) == len(mentions) == n
    order = seen + [i for i in range(n) if i not in seen]
    return order, "ok" if clean else "repaired"
