"""Plain data types shared by every part of Cascade: documents, queries, judgements, runs, hits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
