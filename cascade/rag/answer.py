"""An answer with citations: the passages it was given, its sentences and what each cites.

:meth:`Answer.to_ragnarok` writes the TREC RAG track's (Ragnarök's) JSON: ``references`` is the
list of passage ids given to the model, and each ``answer`` sentence's ``citations`` are
0-based positions in it. :meth:`Answer.text` is the answer as a reader sees it, with 1-based
``[n]`` markers.

>>> refs = [Reference(1, "d7", 3.2, "Cats", "Cats purr."), Reference(2, "d9", 2.0, "", "Dogs bark.")]
>>> a = Answer("why purr?", refs, [Sentence("Cats purr when content.", [1])], dropped=[(0, 4)])
>>> a.to_ragnarok(topic_id="q1")["answer"]
[{'text': 'Cats purr when content.', 'citations': [0]}]
>>> a.text()
'Cats purr when content. [1]'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from cascade.context.record import QuerySelection


@dataclass
class Reference:
    """Passage ``number`` (1-based, as the prompt showed it) of the context: its id in the index,
    its retrieval score and stored fields; ``doc_id`` is the document it belongs to (itself when
    the index holds whole documents)."""

    number: int
    id: str
    score: float
    title: str
    text: str
    doc_id: str = ""

    def __post_init__(self) -> None:
        self.doc_id = self.doc_id or self.id


@dataclass
class Sentence:
    """One sentence of the answer and the passage numbers (1-based) it cites."""

    text: str
    citations: list[int]


@dataclass
class Answer:
    """What :func:`cascade.rag.ask` returns."""

    question: str
    references: list[Reference]
    sentences: list[Sentence]
    dropped: list[tuple[int, int]] = field(default_factory=list)  # (sentence index, cited number not in context)
    raw: str = ""  # the model's text as generated
    selection: list[QuerySelection] = field(default_factory=list)  # context-selection steps, earliest first
    usage: dict[str, float] = field(default_factory=dict)
    model: str = ""
    pipeline: str = ""

    def text(self) -> str:
        """The answer with ``[n]`` markers after each sentence that cites passages."""
        parts = []
        for s in self.sentences:
            marks = "".join(f"[{n}]" for n in s.citations)
            parts.append(f"{s.text} {marks}" if marks else s.text)
        return " ".join(parts)

    def cited(self) -> list[Reference]:
        """The references some sentence cites, in passage order."""
        numbers = {n for s in self.sentences for n in s.citations}
        return [r for r in self.references if r.number in numbers]

    def to_ragnarok(self, topic_id: str = "0", run_id: str = "cascade") -> dict[str, Any]:
        """The TREC RAG (Ragnarök) answer object: ``run_id``, ``topic_id``, ``topic``,
        ``references`` (passage ids), ``response_length`` (words), ``answer`` (sentences with
        0-based ``citations`` into ``references``)."""
        return {
            "run_id": run_id,
            "topic_id": topic_id,
            "topic": self.question,
            "references": [r.id for r in self.references],
            "response_length": sum(len(s.text.split()) for s in self.sentences),
            "answer": [{"text": s.text, "citations": [n - 1 for n in s.citations]} for s in self.sentences],
        }

    def to_dict(self, topic_id: str = "0", run_id: str = "cascade") -> dict[str, Any]:
        """:meth:`to_ragnarok` plus Cascade's own account under ``cascade``: the references' fields,
        dropped citations, the context selection, model and usage."""
        return {**self.to_ragnarok(topic_id, run_id), "cascade": {
            "model": self.model, "pipeline": self.pipeline, "raw": self.raw,
            "references": [asdict(r) for r in self.references],
            "dropped_citations": [{"sentence": i, "number": n} for i, n in self.dropped],
            "selection": [s.to_dict() for s in self.selection], "usage": self.usage}}
