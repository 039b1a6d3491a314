"""Numbered citations in a generated answer: split it into sentences, read each sentence's
``[n]`` markers, and keep only numbers that name a passage of the context.

A model may cite a passage that was never given (``[7]`` with five passages): such a number is
dropped from the sentence's citations and reported, never mapped to anything. Markers are
``[1]``, ``[1, 3]``, ``[1][2]`` and ranges ``[2-4]``; a marker right after a sentence's full stop
(on the same line) belongs to that sentence, one opening a line to the sentence it opens.

>>> parse_answer("Cats purr [1]. Dogs bark.[2][9] Birds sing [1-2].", n_passages=2)
([('Cats purr.', [1]), ('Dogs bark.', [2]), ('Birds sing.', [1, 2])], [(1, 9)])
"""

from __future__ import annotations

import re

MARKER = re.compile(r"\[\s*(\d+(?:\s*(?:[-–,;]|and)\s*\d+)*)\s*\]")
# a sentence ends at . ! or ? (and the markers right after it) before whitespace or the end, or at a line break
END = re.compile(r"[.!?]+(?:[ \t]*\[\s*\d[\d\s,;\-–and]*\])*(?=\s|$)|\n+")
MAX_RANGE = 50  # a range marker wider than this is read as its two ends


def split_sentences(text: str) -> list[str]:
    """``text`` cut into sentences (citation markers after a full stop stay with its sentence)."""
    out, pos = [], 0
    for m in END.finditer(text):
        out.append(text[pos:m.end()])
        pos = m.end()
    out.append(text[pos:])
    return [s.strip() for s in out if s.strip()]


def marker_numbers(marker: str) -> list[int]:
    """The numbers one marker's inside names: ``"1, 3"`` -> [1, 3], ``"2-4"`` -> [2, 3, 4]."""
    numbers: list[int] = []
    for part in re.split(r"\s*(?:[,;]|and)\s*", marker.strip()):
        ends = [int(x) for x in re.split(r"\s*[-–]\s*", part) if x.strip().isdigit()]
        if len(ends) == 2 and 0 <= ends[1] - ends[0] <= MAX_RANGE:
            numbers.extend(range(ends[0], ends[1] + 1))
        else:
            numbers.extend(ends)
    return numbers


def strip_markers(sentence: str) -> str:
    """The sentence without its markers, spaces tidied (no space left before punctuation)."""
    text = MARKER.sub("", sentence)
    text = re.sub(r"\s+([.,;:!?])", r"\1", text)
    return re.sub(r"\s{2,}", " ", text).strip()


def parse_answer(text: str, n_passages: int) -> tuple[list[tuple[str, list[int]]], list[tuple[int, int]]]:
    """``(sentences, dropped)``: each sentence's text without markers and the 1-based passage
    numbers it cites (existing ones only, first mention order, no repeats); ``dropped`` lists
    ``(sentence index, number)`` for every cited number outside 1..``n_passages``."""
    sentences: list[tuple[str, list[int]]] = []
    dropped: list[tuple[int, int]] = []
    for sentence in split_sentences(text):
        cited: list[int] = []
        for m in MARKER.finditer(sentence):
            for n in marker_numbers(m.group(1)):
                if not 1 <= n <= n_passages:
                    if (len(sentences), n) not in dropped:
                        dropped.append((len(sentences), n))
                elif n not in cited:
                    cited.append(n)
        clean = strip_markers(sentence)
        if clean:
            sentences.append((clean, cited))
        elif cited and sentences:  # markers alone on a line: they belong to the sentence before
            sentences[-1][1].extend(n for n in cited if n not in sentences[-1][1])
    return sentences, dropped
