"""Passage indexes: documents stored and searched as overlapping passages.

``Index.build(docs, path, passages={"tokens": 200, "overlap": 40})`` (CLI ``cascade index SOURCE
-o DIR --passage-tokens 200 --passage-overlap 40``) splits every document with
:func:`cascade.text.passages.split_passages` and indexes each passage as an entry of its own, so
every stage (BM25, dense, MaxSim, rerankers) works on passages unchanged. The settings are
recorded in the manifest (``"passages": {"tokens": 200, "overlap": 40}``), and
``Index.add/update/delete`` split and replace whole documents the same way.

One passage entry:

- id ``"<doc id>#<n>"`` (n from 0; the document id is everything before the *last* ``#``, so
  any document id works), see :func:`passage_id` / :func:`parent_id`;
- title: the document's title and the Markdown headings above the passage, joined by `` > ``
  (indexed with the text by default: headings are part of what a passage is about);
- text: the passage, a contiguous slice of the document's text;
- meta: the document's metadata (so filters work as on documents) plus ``"_passage": {"doc",
  "n", "count", "start", "end"}`` (document id, passage number, passages in the document,
  character span in the document's text).

A document's passages are written together, in order, into one segment, and merges keep that
order, so the passages of a document are consecutive entries: a document is deleted or
replaced as a whole (:func:`locate_document`), and :func:`first_passages` maps every entry to
its document's first passage. Results become documents again with the ``to_docs`` stage
(:mod:`cascade.fuse.to_docs`), whose output lives in a :class:`DocumentView`.

>>> import tempfile, cascade
>>> text = "# Tea\\n\\nGreen tea is steamed. " + "Filler words. " * 30 + "\\n\\n## Storage\\n\\nKeep it dry."
>>> idx = cascade.Index.build([cascade.Doc("tea.md", text, "Tea")], tempfile.mkdtemp() + "/t.idx",
...                           passages={"tokens": 40, "overlap": 8})
>>> [(d.id, d.title) for d in idx]
[('tea.md#0', 'Tea'), ('tea.md#1', 'Tea'), ('tea.md#2', 'Tea > Storage')]
>>> idx.passages
{'tokens': 40, 'overlap': 8}
"""

from __future__ import annotations

import weakref
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from cascade.core.errors import CascadeError
from cascade.core.types import Doc, as_doc
from cascade.text.passages import check_sizes, split_passages

PASSAGE_KEY = "_passage"  # the reserved metadata key of a passage entry
TITLE_SEPARATOR = " > "


def passage_settings(value: Any) -> dict[str, int] | None:
    """The checked settings ``{"tokens": N, "overlap": M}`` for what a user gave: None, an int
    (tokens, no overlap) or a mapping with ``tokens`` and optionally ``overlap``."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = {"tokens": value}
    if not isinstance(value, Mapping) or "tokens" not in value or set(value) - {"tokens", "overlap"}:
        raise CascadeError(f"passages must be a number of tokens or {{'tokens': N, 'overlap': M}} (got {value!r})")
    tokens, overlap = value["tokens"], value.get("overlap", 0)
    check_sizes(tokens, overlap)
    return {"tokens": int(tokens), "overlap": int(overlap)}


def passage_id(doc_id: str, n: int) -> str:
    """The id of passage ``n`` of document ``doc_id``.

    >>> passage_id("guide.md", 3), parent_id("a#b#3")
    ('guide.md#3', 'a#b')
    """
    return f"{doc_id}#{n}"


def parent_id(pid: str) -> str:
    """The document id of a passage id (everything before the last ``#``)."""
    return pid.rpartition("#")[0]


def passage_title(title: str, headings: Sequence[str]) -> str:
    """The document's title and the heading path, without repeating a heading equal to it."""
    parts = [title] if title else []
    for h in headings:
        if h and h not in parts:
            parts.append(h)
    return TITLE_SEPARATOR.join(parts)


def split_document(doc: Doc, tokens: int, overlap: int) -> list[Doc]:
    """The passage entries of one document (at least one: a document with no words keeps its
    text as one passage)."""
    found = split_passages(doc.text, tokens, overlap)
    spans = [(p.start, p.end, p.headings) for p in found] or [(0, len(doc.text), ())]
    out = []
    for n, (start, end, headings) in enumerate(spans):
        meta = {**doc.meta, PASSAGE_KEY: {"doc": doc.id, "n": n, "count": len(spans), "start": start, "end": end}}
        out.append(Doc(passage_id(doc.id, n), doc.text[start:end], passage_title(doc.title, headings), meta))
    return out


def passage_docs(docs: Iterable[Any], settings: Mapping[str, int]) -> Iterator[Doc]:
    """Every passage entry of ``docs`` (Doc objects or dicts, checked as a build checks them)."""
    tokens, overlap = settings["tokens"], settings.get("overlap", 0)
    if isinstance(docs, (str, bytes, Doc, Mapping)):
        raise CascadeError(f"documents must be an iterable of cascade.Doc or dicts, not one {type(docs).__name__} "
                           "(wrap a single document in a list)")
    for position, record in enumerate(docs):
        doc = as_doc(record, position)
        if PASSAGE_KEY in doc.meta:
            raise CascadeError(f"documents[{position}] (id {doc.id!r}): metadata key {PASSAGE_KEY!r} is reserved "
                               "for passage indexes")
        yield from split_document(doc, tokens, overlap)


def document_of(doc: Doc) -> tuple[str, int]:
    """(document id, passage number) of a passage entry."""
    info = doc.meta.get(PASSAGE_KEY)
    if not isinstance(info, dict):
        raise CascadeError(f"{doc.id!r} is not a passage entry (no {PASSAGE_KEY!r} metadata)")
    return info["doc"], int(info["n"])


def locate_document(segments: Sequence[Any], doc_id: str) -> list[tuple[int, int]]:
    """(segment position, local number) of every live passage of document ``doc_id`` (empty when
    it has none). Its first passage names how many there are; they follow it in one segment."""
    first = passage_id(doc_id, 0)
    for s, seg in enumerate(segments):
        local = seg.id_numbers.get(first)
        if local is None or not seg.is_live(local):
            continue
        meta = seg.docstore.fields([local])[0][3]
        count = int(meta.get(PASSAGE_KEY, {}).get("count", 1))
        found = [(s, local)]
        for n in range(1, count):
            other = seg.id_numbers.get(passage_id(doc_id, n))
            if other is not None and seg.is_live(other):
                found.append((s, other))
        return found
    return []


def _segment_firsts(seg: Any) -> np.ndarray:
    """For each local entry, the local number of its document's first passage (int64)."""
    ids = seg.doc_ids(np.arange(seg.n_docs))
    is_first = np.fromiter((i.endswith("#0") for i in ids), dtype=bool, count=len(ids))
    return np.maximum.accumulate(np.where(is_first, np.arange(len(ids)), 0))


_FIRSTS: "weakref.WeakKeyDictionary[Any, np.ndarray]" = weakref.WeakKeyDictionary()


def first_passages(index: Any) -> np.ndarray:
    """int64[index.n_slots]: for every global entry number, the number of its document's first
    passage (the same number for all passages of a document, in this snapshot). Computed per
    segment from the ids once per process, and once per snapshot for the whole index."""
    found = _FIRSTS.get(index)
    if found is None:
        parts = [base + seg.cached(("passage-firsts",), lambda seg=seg: _segment_firsts(seg))
                 for base, seg in zip(index.bases[:-1].tolist(), index.segments)]
        found = np.concatenate(parts).astype(np.int64) if parts else np.empty(0, np.int64)
        _FIRSTS[index] = found
    return found


class DocumentView:
    """The doc-id space of document results made from a passage index's passages: a number is
    the global entry number of the passage that represents the document in that result (its
    best passage under MaxP), the id is the document's id, and the stored fields shown for it
    are that passage's (so the snippet is the best passage).

    Each ``to_docs`` run makes its own view, so fusing two document results maps them by
    document id (numbers of different best passages would not match)."""

    def __init__(self, index: Any) -> None:
        self.passages_of = index

    def doc_ids(self, nums: Sequence[int] | np.ndarray) -> list[str]:
        return [parent_id(pid) for pid in self.passages_of.doc_ids(nums)]

    def docs(self, nums: Sequence[int] | np.ndarray) -> list[Doc]:
        """The document of each number, shown by its passage: document id, the passage's title
        (document title > headings), text and metadata (with ``_passage``)."""
        return [Doc(parent_id(pid), text, title, meta)
                for pid, title, text, meta in self.passages_of.doc_fields(nums)]

    def __repr__(self) -> str:
        return f"DocumentView({self.passages_of!r})"
