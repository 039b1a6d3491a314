"""Plain data types shared by every part of Cascade: documents, queries, judgements, runs, hits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cascade.core.errors import CascadeError

# query id -> doc id -> graded relevance
Qrels = dict[str, dict[str, int]]
# query id -> doc id -> score
Run = dict[str, dict[str, float]]


@dataclass(slots=True)
class Doc:
    """One document: a unique id, its text, an optional title and metadata. (A plain record,
    not frozen: a frozen dataclass costs about 4x as much to make, and searches make many.)"""

    id: str
    text: str
    title: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


DOC_ID_KEYS = ("_id", "id")


def as_doc(record: object, position: int) -> Doc:
    """``record`` as a :class:`Doc`, checked: a ``Doc`` whose id and text are strings, or a
    mapping ``{"_id" or "id", "text", "title"?, other keys -> meta}``. Anything else raises a
    :class:`CascadeError` naming the record's 0-based ``position`` in the input, so a bad
    record is reported where it is, not as a failure deep inside indexing. A valid ``Doc``
    costs a few type checks (this runs for every document of a build)."""
    if isinstance(record, Doc):
        if isinstance(record.id, str) and isinstance(record.text, str) and isinstance(record.title, str) \
                and isinstance(record.meta, dict) and record.id:
            return record
        raise CascadeError(f"documents[{position}]: {_doc_problem(record)}")
    if isinstance(record, Mapping):
        return doc_from_mapping(record, position)
    raise CascadeError(f"documents[{position}]: expected a cascade.Doc or a dict with an id and a text, "
                       f"got {type(record).__name__}")


def _doc_problem(doc: Doc) -> str:
    for name in ("id", "text", "title"):
        value = getattr(doc, name)
        if not isinstance(value, str):
            return f"Doc.{name} must be a string, got {type(value).__name__} {value!r:.60}"
    if not doc.id:
        return "Doc.id must not be empty"
    return f"Doc.meta must be a dict, got {type(doc.meta).__name__}"


def doc_from_mapping(record: Mapping[str, Any], position: int) -> Doc:
    """A :class:`Doc` from ``{"_id" or "id", "text", "title"?, ...}``: a ``metadata`` dict and
    every other key go to ``meta`` (``metadata`` wins a clash, as in the JSONL reader)."""
    id_key = next((k for k in DOC_ID_KEYS if k in record), None)
    where = f"documents[{position}]"
    if id_key is None:
        raise CascadeError(f"{where}: a document dict needs an \"_id\" or \"id\" (keys: {sorted(map(str, record))})")
    doc_id, text, title = record[id_key], record.get("text"), record.get("title", "")
    if not isinstance(doc_id, str) or not doc_id:
        raise CascadeError(f"{where}: {id_key} must be a non-empty string, got {type(doc_id).__name__} {doc_id!r:.60}")
    if not isinstance(text, str):
        what = "no \"text\"" if "text" not in record else f"text is {type(text).__name__}, not a string"
        raise CascadeError(f"{where} (id {doc_id!r}): {what}")
    if not isinstance(title, str):
        raise CascadeError(f"{where} (id {doc_id!r}): title is {type(title).__name__}, not a string")
    meta = {k: v for k, v in record.items() if k not in (id_key, "text", "title", "metadata")}
    if isinstance(record.get("metadata"), Mapping):
        meta.update(record["metadata"])
    elif "metadata" in record:
        meta["metadata"] = record["metadata"]
    return Doc(doc_id, text, title, meta)


@dataclass(frozen=True, slots=True)
class Query:
    """One query: a unique id and its text."""

    id: str
    text: str


@dataclass(slots=True)
class ReadReport:
    """Counts what a reader read and skipped (with ``skip_bad=True``)."""

    read: int = 0
    skipped: int = 0
    problems: list[str] = field(default_factory=list)
    max_kept: int = 20

    def skip(self, problem: str) -> None:
        self.skipped += 1
        if len(self.problems) < self.max_kept:
            self.problems.append(problem)

    def summary(self) -> str:
        text = f"{self.read} read"
        if self.skipped:
            text += f", {self.skipped} skipped"
        return text


@dataclass(slots=True)
class Hit:
    """One search result for one query: the document's id, score and 1-based rank, with its
    stored title and text (empty when the answering index stores none)."""

    id: str
    score: float
    rank: int
    title: str = ""
    text: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
