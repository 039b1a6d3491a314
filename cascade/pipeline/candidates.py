"""Candidates: ranked results for a batch of queries, as ragged columnar arrays."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Protocol, Sequence

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
    query_seconds: np.ndarray | None = None  # per-query latency of the stage that made these
    origin: Any = field(default=None, compare=False, repr=False)  # executor's key of what produced these

    def __post_init__(self) -> None:
        self.offsets = np.asarray(self.offsets, dtype=np.int64)
        self.doc = np.asarray(self.doc, dtype=np.int32)
        self.score = np.asarray(self.score, dtype=np.float32)
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

    def query_index(self) -> np.ndarray:
        """For each candidate, the position of its query (int64[n])."""
        return np.repeat(np.arange(len(self.query_ids)), np.diff(self.offsets))

    def ranks(self) -> np.ndarray:
        """1-based rank of each candidate within its query."""
        return np.arange(len(self.doc)) - np.repeat(self.offsets[:-1], np.diff(self.offsets)) + 1

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


class IdTable:
    """A doc-id space of its own, for candidates that come from outside an index."""

    def __init__(self, ids: Sequence[str] = ()) -> None:
        self.ids: list[str] = []
        self.numbers: dict[str, int] = {}
        self.add(ids)

    def add(self, ids: Sequence[str]) -> np.ndarray:
        """Numbers for ``ids``, adding the ones not seen before."""
        out = np.empty(len(ids), dtype=np.int32)
        for i, doc_id in enumerate(ids):
            num = self.numbers.get(doc_id)
            if num is None:
                num = self.numbers[doc_id] = len(self.ids)
                self.ids.append(doc_id)
            out[i] = num
        return out

    def doc_ids(self, nums: Sequence[int] | np.ndarray) -> list[str]:
        ids = self.ids
        return [ids[n] for n in np.asarray(nums).tolist()]

    def __len__(self) -> int:
        return len(self.ids)


def in_space(cands: Candidates, space: DocIdSpace) -> Candidates:
    """The same candidates with doc numbers expressed in ``space`` (an IdTable)."""
    if cands.space is space:
        return cands
    if not isinstance(space, IdTable):
        raise TypeError("can only re-map candidates into an IdTable")
    doc = space.add(cands.space.doc_ids(cands.doc))
    return replace(cands, doc=doc, space=space)


def common_space(cands: Sequence[Candidates]) -> tuple[DocIdSpace, list[Candidates]]:
    """One doc-id space for several candidate sets (theirs if shared, else a new IdTable)."""
    first = cands[0].space
    if all(c.space is first for c in cands):
        return first, list(cands)
    table = IdTable()
    return table, [in_space(c, table) for c in cands]


def cut(cands: Candidates, k: int) -> Candidates:
    """Keep the first ``k`` candidates of every query."""
    lengths = np.minimum(np.diff(cands.offsets), k)
    if np.all(lengths == np.diff(cands.offsets)):
        return cands
    keep = np.concatenate([np.arange(s, s + n) for s, n in zip(cands.offsets[:-1], lengths)]) if len(lengths) else \
        np.empty(0, np.int64)
    offsets = np.zeros_like(cands.offsets)
    np.cumsum(lengths, out=offsets[1:])
    return replace(cands, offsets=offsets, doc=cands.doc[keep], score=cands.score[keep])


def sort_within_queries(query_ids: list[str], qidx: np.ndarray, doc: np.ndarray, score: np.ndarray,
                        space: DocIdSpace) -> Candidates:
    """Build Candidates from unordered (query index, doc, score) triples: best first, ties by doc number."""
    order = np.lexsort((doc, -score, qidx))
    counts = np.bincount(qidx, minlength=len(query_ids))
    offsets = np.zeros(len(query_ids) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return Candidates(query_ids, offsets, doc[order].astype(np.int32), score[order].astype(np.float32), space)
