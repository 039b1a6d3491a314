"""Candidates: ranked results for a batch of queries, as ragged columnar arrays."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Protocol, Sequence

import numpy as np

from cascade.data.types import Run


class DocIdSpace(Protocol):
    """Maps internal doc numbers to external ids (an :class:`~cascade.Index` is one)."""

    def doc_ids(self, nums: Sequence[int] | np.ndarray) -> list[str]: ...


@dataclass
class Candidates:
    """Results of one stage for ``Q`` queries.

    Query ``i``'s results are ``doc[offsets[i]:offsets[i+1]]`` (int32 doc numbers in
    ``space``) with ``score`` (float32), best first.
    """

    query_ids: list[str]
    offsets: np.ndarray
    doc: np.ndarray
    score: np.ndarray
    space: DocIdSpace
    seconds: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.offsets) != len(self.query_ids) + 1:
            raise ValueError("offsets must have one more entry than query_ids")
        if len(self.doc) != len(self.score) or self.offsets[-1] != len(self.doc):
            raise ValueError("doc, score and offsets disagree in length")

    @classmethod
    def from_lists(cls, query_ids: list[str], docs: list[np.ndarray], scores: list[np.ndarray],
                   space: DocIdSpace) -> "Candidates":
        offsets = np.zeros(len(docs) + 1, dtype=np.int64)
        np.cumsum([len(d) for d in docs], out=offsets[1:])
        doc = np.concatenate(docs).astype(np.int32, copy=False) if docs else np.empty(0, np.int32)
        score = np.concatenate(scores).astype(np.float32, copy=False) if scores else np.empty(0, np.float32)
        return cls(query_ids, offsets, doc, score, space)

    def __len__(self) -> int:
        return len(self.query_ids)

    def per_query(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """(query id, doc numbers, scores) for each query."""
        for i, qid in enumerate(self.query_ids):
            s, e = self.offsets[i], self.offsets[i + 1]
            yield qid, self.doc[s:e], self.score[s:e]

    def to_run(self) -> Run:
        """{query id: {doc id: score}} with external doc ids."""
        ids = self.space.doc_ids(self.doc)
        run: Run = {}
        for i, qid in enumerate(self.query_ids):
            s, e = int(self.offsets[i]), int(self.offsets[i + 1])
            run[qid] = dict(zip(ids[s:e], self.score[s:e].tolist()))
        return run
