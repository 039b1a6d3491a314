"""Splitting a long document into passages of at most N tokens, overlapping by up to M tokens,
at sentence and paragraph boundaries, each passage knowing the Markdown headings above it.

The usual way to search documents longer than an encoder's input (256-512 word pieces: the
rest is silently truncated) is to index fixed-size overlapping passages and score a document
by its passages (Dai & Callan, "Deeper Text Understanding for IR with Contextual Neural
Language Modeling", SIGIR 2019: FirstP / MaxP / SumP; Callan, "Passage-level evidence in
document retrieval", SIGIR 1994: bounded, overlapping windows).

How text is cut (:func:`split_passages`):

- *tokens* are whitespace-separated words (an encoder's WordPiece count is about 1.3x that);
- the text is read as *units*: Markdown heading lines (``#`` .. ``######`` outside fenced code),
  and the sentences of each paragraph (paragraphs are separated by blank lines; a sentence ends
  at ``.``, ``!`` or ``?`` followed by white space); a unit longer than N tokens is cut into
  runs of N words;
- units are packed greedily into passages of at most N tokens; a heading starts a new passage
  once the current one holds half of N (so long sections are not mixed, and a run of short
  sections, such as an API reference, shares passages instead of making tiny ones), and a
  heading never ends a passage;
- a passage after a cut (not after a heading) repeats the last whole sentences of the one
  before, at most M tokens of them (overlap is sentence-aligned, so it may be less than M);
- each passage is a contiguous slice ``text[start:end]`` of the document and carries the
  heading path above its first sentence (``("Install", "On Linux")``), which callers use as
  context.

>>> text = "# Guide\\n\\nFirst sentence here. Second one follows.\\n\\n## Setup\\n\\nRun the tool now."
>>> [(text[p.start:p.end], p.headings) for p in split_passages(text, tokens=8)]
[('# Guide\\n\\nFirst sentence here. Second one follows.', ('Guide',)), \
('## Setup\\n\\nRun the tool now.', ('Guide', 'Setup'))]
>>> plain = "a b c. d e f. g h i."
>>> [plain[p.start:p.end] for p in split_passages(plain, tokens=6, overlap=3)]
['a b c. d e f.', 'd e f. g h i.']
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cascade.core.errors import CascadeError

_HEADING = re.compile(r"(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
_FENCE = re.compile(r"(```|~~~)")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=\S)")
_WORD = re.compile(r"\S+")


@dataclass(frozen=True, slots=True)
class Passage:
    """One passage: ``text[start:end]`` of its document, its number of tokens (words) and the
    heading path above it (outermost first)."""

    start: int
    end: int
    tokens: int
    headings: tuple[str, ...] = ()


@dataclass(slots=True)
class _Unit:
    start: int
    end: int
    tokens: int
    heading: bool
    headings: tuple[str, ...]


def check_sizes(tokens: int, overlap: int) -> None:
    """CascadeError unless 1 <= ``tokens`` and 0 <= ``overlap`` < ``tokens``."""
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise CascadeError(f"passage tokens must be a positive integer (got {tokens!r})")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < tokens:
        raise CascadeError(f"passage overlap must be an integer from 0 to tokens - 1 = {tokens - 1} (got {overlap!r})")


def _units(text: str, limit: int) -> list[_Unit]:
    """Heading lines and sentences (cut to at most ``limit`` words) with their spans, in order."""
    units: list[_Unit] = []
    stack: list[tuple[int, str]] = []
    in_fence = False
    para_start = -1
    pos = 0

    def paragraph(start: int, end: int) -> None:
        body = text[start:end]
        cuts = [0] + [m.end() for m in _SENTENCE_END.finditer(body)] + [len(body)]
        path = tuple(h for _, h in stack)
        for a, b in zip(cuts, cuts[1:]):
            sentence = body[a:b].rstrip()
            words = [(m.start(), m.end()) for m in _WORD.finditer(sentence)]
            for i in range(0, len(words), limit):
                run = words[i:i + limit]
                units.append(_Unit(start + a + run[0][0], start + a + run[-1][1], len(run), False, path))

    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        heading = None if in_fence else _HEADING.fullmatch(stripped)
        if _FENCE.match(stripped):
            in_fence = not in_fence
        if (heading is not None or not stripped) and para_start >= 0:
            paragraph(para_start, pos)
            para_start = -1
        if heading is not None:
            level = len(heading.group(1))
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, heading.group(2)))
            lead = len(line) - len(line.lstrip())
            units.append(_Unit(pos + lead, pos + lead + len(stripped), len(_WORD.findall(stripped)), True,
                               tuple(h for _, h in stack)))
        elif stripped and para_start < 0:
            para_start = pos
        pos += len(line)
    if para_start >= 0:
        paragraph(para_start, pos)
    return units


def split_passages(text: str, tokens: int, overlap: int = 0) -> list[Passage]:
    """Passages of at most ``tokens`` words overlapping by up to ``overlap`` words of whole
    sentences (see the module docstring). Text with no words gives no passage."""
    check_sizes(tokens, overlap)
    out: list[Passage] = []
    current: list[_Unit] = []

    def close() -> None:
        content = [u for u in current if not u.heading]
        path = (content[0] if content else current[-1]).headings
        out.append(Passage(current[0].start, current[-1].end, sum(u.tokens for u in current), path))

    for unit in _units(text, tokens):
        has_content = any(not u.heading for u in current)
        size = sum(u.tokens for u in current)
        if unit.heading:
            if has_content and (2 * size >= tokens or size + unit.tokens > tokens):
                close()
                current = []
            current.append(unit)
            continue
        if current and has_content and size + unit.tokens > tokens:
            close()
            carried: list[_Unit] = []
            room = min(overlap, tokens - unit.tokens)
            for prev in reversed(current):
                if prev.heading or prev.tokens > room:
                    break
                carried.insert(0, prev)
                room -= prev.tokens
            current = carried
        elif current and not has_content and size + unit.tokens > tokens:
            close()  # headings alone longer than a passage: they stand alone
            current = []
        current.append(unit)
    if current:
        close()
    return out
