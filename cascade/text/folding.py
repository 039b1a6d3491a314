"""Accent folding: "Café Zürich" and "cafe zurich" become the same words.

Unicode compatibility decomposition (NFKD), then the combining diacritical marks are dropped
and the Latin letters that do not decompose (ø, æ, ß, đ, ł, œ, þ, ...) are spelt in ASCII, as
Lucene's ASCIIFoldingFilter spells them; last, NFC composes what is left (so Hangul syllables
and Japanese voiced kana, which NFKD splits, come back whole).

Only the generic diacritic blocks are dropped (U+0300-036F, U+1AB0-1AFF, U+1DC0-1DFF,
U+20D0-20FF, U+FE20-FE2F): they are what Latin, Greek and Cyrillic letters decompose into.
Marks that belong to a script (Indic vowel signs and viramas, Hebrew points, Arabic harakat,
the kana voicing marks) are kept: dropping them changes or breaks words. ASCII text is
returned as is.

>>> fold_accents("Café Zürich, Øresund, Straße, Łódź, Œuvre, naïve, Ελλάδα")
'Cafe Zurich, Oresund, Strasse, Lodz, OEuvre, naive, Ελλαδα'
"""

from __future__ import annotations

import re
import unicodedata

# Letters with no Unicode decomposition, spelt as Lucene's ASCIIFoldingFilter spells them
# (upper case kept upper: folding runs before lowercasing).
LETTERS: dict[str, str] = {
    "Æ": "AE", "æ": "ae", "Ð": "D", "ð": "d", "Ø": "O", "ø": "o", "Þ": "TH", "þ": "th", "ß": "ss", "ẞ": "SS",
    "Đ": "D", "đ": "d", "Ħ": "H", "ħ": "h", "ı": "i", "ĸ": "q", "Ł": "L", "ł": "l", "Ŋ": "N", "ŋ": "n",
    "Œ": "OE", "œ": "oe", "Ŧ": "T", "ŧ": "t",
    "ƀ": "b", "Ɓ": "B", "ɓ": "b", "Ƈ": "C", "ƈ": "c", "Ɖ": "D", "ɖ": "d", "Ɗ": "D", "ɗ": "d", "Ƒ": "F",
    "ƒ": "f", "Ɠ": "G", "ɠ": "g", "Ɨ": "I", "ɨ": "i", "Ƙ": "K", "ƙ": "k", "ƚ": "l", "Ɲ": "N", "ɲ": "n",
    "Ƥ": "P", "ƥ": "p", "Ƭ": "T", "ƭ": "t", "Ʈ": "T", "ʈ": "t", "Ƶ": "Z", "ƶ": "z", "Ǥ": "G", "ǥ": "g",
    "Ȥ": "Z", "ȥ": "z", "Ȼ": "C", "ȼ": "c", "Ƀ": "B", "Ɇ": "E", "ɇ": "e", "Ɉ": "J", "ɉ": "j", "Ɍ": "R",
    "ɍ": "r", "Ɏ": "Y", "ɏ": "y", "Ʉ": "U", "ʉ": "u", "ȡ": "d", "ȴ": "l", "ȵ": "n", "ȶ": "t", "ȷ": "j",
    "ɟ": "j", "ʝ": "j", "ɦ": "h", "ɱ": "m", "ɳ": "n", "ɽ": "r", "ʂ": "s", "ʐ": "z", "ʠ": "q",
}

# The combining diacritical marks dropped after decomposition.
MARKS = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"

_TO_FOLD = re.compile(f"[{MARKS}{''.join(LETTERS)}]+")


def _spell(match: re.Match[str]) -> str:
    return "".join(LETTERS.get(ch, "") for ch in match.group())


def fold_accents(text: str) -> str:
    """``text`` with accents and other diacritics removed (see the module docstring)."""
    if text.isascii():
        return text
    return unicodedata.normalize("NFC", _TO_FOLD.sub(_spell, unicodedata.normalize("NFKD", text)))
