"""CJK text, written without spaces, as overlapping character bigrams (Lucene's CJKAnalyzer).

A run of Han, Hiragana, Katakana or Hangul characters becomes its overlapping pairs of
characters; a run of one character stays a unigram. What lies between the runs is tokenised
by the analyzer's token pattern, so a change of script ends a word ("iPhone用" is "iPhone"
then "用").

>>> bigrams("東京都")
['東京', '京都']
>>> bigrams("猫")
['猫']
"""

from __future__ import annotations

import re

# Han (radicals, CJK symbols used as letters, unified and compatibility ideographs up to
# Extension H), Hiragana and Katakana (with their voicing marks and the prolonged sound mark,
# not the ゠ and ・ punctuation), the Kana supplements, and Hangul jamo and syllables, full
# and half width.
CJK_CHARS = (
    "\u2e80-\u2fdf\u3005-\u3007\u3021-\u3029\u3038-\u303b\u3041-\u309f\u30a1-\u30fa\u30fc-\u30ff"
    "\u3131-\u318e\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\ua960-\ua97f\uac00-\ud7ff\uf900-\ufaff"
    "\uff66-\uff9f\uffa0-\uffdc\u1100-\u11ff\U0001b000-\U0001b16f\U00020000-\U0002fa1f\U00030000-\U0003134f"
)

# A run of CJK characters, captured so that re.split keeps the runs (at the odd positions).
CJK_RUN = re.compile(f"([{CJK_CHARS}]+)")


def bigrams(run: str) -> list[str]:
    """The overlapping character bigrams of a run of CJK characters (one character: itself)."""
    if len(run) < 2:
        return [run]
    return [run[i:i + 2] for i in range(len(run) - 1)]
