"""Query-biased snippets: the window of a document with the most query terms, and where they are.

A word of the text is marked when one of its index terms (the same analyzer as the index:
folding, lowercasing, stemming) is a term of the query, so "cats" marks "cat" and "Cat's".
Marks are character offsets into the snippet, never markup: a caller renders them as it likes
(the web page inserts text nodes and ``<mark>`` elements), so no document text is ever
interpreted as HTML.

>>> from cascade.text.analyzer import Analyzer
>>> s = snippet("Cats purr. Dogs bark at cats and strangers.", "cat", Analyzer(stemmer="english"))
>>> s.text, [s.text[a:b] for a, b in s.marks]
('Cats purr. Dogs bark at cats and strangers.', ['Cats', 'cats'])
>>> s = snippet("Les chats ronronnent. Élan vital, élan!", "elan", Analyzer())  # folded: É matches e
>>> [s.text[a:b] for a, b in s.marks]
['Élan', 'élan']
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from cascade.text.analyzer import Analyzer

WORD = re.compile(r"\w+")


@dataclass
class Snippet:
    """``text``: a window of the document (``…`` where it was cut); ``marks``: (start, end)
    character offsets of the matching words in ``text``."""

    text: str
    marks: list[tuple[int, int]] = field(default_factory=list)


def _hit_tokens(tokens: set[str], wanted: set[str], analyzer: Analyzer) -> set[str]:
    """The raw tokens (lowercased, ASCII) whose index term is wanted: stems come from the
    analyzer's own cache, the missing ones stemmed in one call."""
    tokens = tokens - analyzer._stopset
    stem = analyzer._stem_words
    if stem is None:
        return tokens & wanted
    cache = analyzer._cache
    if len(cache) > 1_000_000:
        cache.clear()
    missing = [t for t in tokens if t not in cache]
    if missing:
        cache.update(zip(missing, stem(missing)))
    return {t for t in tokens if cache[t] in wanted}


def _hit_words(text: str, wanted: set[str], analyzer: Analyzer) -> set[str]:
    """The distinct words of (lowercased) ``text`` that match: ASCII ones as tokens, the others
    through the whole analyzer (folding, CJK)."""
    if text.isascii():
        return _hit_tokens(set(analyzer._regex.findall(text)), wanted, analyzer)
    words = set(WORD.findall(text))
    plain = {w for w in words if w.isascii()}
    found = _hit_tokens(plain, wanted, analyzer)
    found.update(w for w in words - plain if wanted.intersection(analyzer.terms(w)))
    return found


def _matches(text: str, wanted: set[str], analyzer: Analyzer) -> list[tuple[int, int]]:
    """Spans of the words of ``text`` whose index term is a query term (each distinct word is
    analysed once)."""
    lowered = text.lower() if analyzer.lowercase else text
    if len(lowered) != len(text):  # lowercasing moved offsets (rare letters such as "İ")
        return [m.span() for m in WORD.finditer(text) if wanted.intersection(analyzer.terms(m.group()))]
    found = _hit_words(lowered, wanted, analyzer)
    if not found:
        return []
    words = analyzer._regex if lowered.isascii() else WORD
    return [m.span() for m in words.finditer(lowered) if m.group() in found]


def _best_window(starts: list[int], width: int) -> int:
    """The match start that begins the ``width``-character window holding most matches."""
    best, best_start, j = 0, starts[0], 0
    for i, start in enumerate(starts):
        while starts[j] < start - width:
            j += 1
        if i - j + 1 > best:
            best, best_start = i - j + 1, starts[j]
    return best_start


def _cut(text: str, begin: int, end: int) -> tuple[int, int]:
    """``begin``/``end`` moved out to word boundaries (never past the text)."""
    while begin > 0 and not text[begin - 1].isspace():
        begin -= 1
    while end < len(text) and not text[end].isspace():
        end += 1
    return begin, end


def snippet(text: str, query: str, analyzer: Analyzer, width: int = 300) -> Snippet:
    """About ``width`` characters of ``text`` around the most query terms, and their marks."""
    text = " ".join(text.split())
    wanted = set(analyzer.terms(query))
    spans = _matches(text, wanted, analyzer) if wanted else []
    if len(text) <= width:
        return Snippet(text, spans)
    if not spans:
        return Snippet(text[:_cut(text, 0, width)[1]] + " …")
    last_start = _best_window([a for a, _ in spans], width)
    first = next(a for a, _ in spans if a >= last_start - width)
    slack = max(0, width - (last_start - first)) // 3  # some context before the first match
    begin, end = _cut(text, max(0, first - slack), max(0, first - slack) + width)
    prefix, suffix = ("…" if begin else ""), (" …" if end < len(text) else "")
    shift = len(prefix) - begin
    marks = [(a + shift, b + shift) for a, b in spans if a >= begin and b <= end]
    return Snippet(prefix + text[begin:end] + suffix, marks)
