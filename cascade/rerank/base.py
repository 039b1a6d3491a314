"""What rerankers share: reading candidates as index documents, writing re-sorted candidates.

A reranker re-scores the incoming candidates (from the index, or the id table of a stored run:
they are mapped to the index by id) and returns them in the index's doc numbers; ``k`` limits
its output (pushed down by ``compile()`` from a following
``% k``), which lets rank-safe pruning skip candidates that cannot reach the top ``k``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from cascade.data.types import Query
from cascade.errors import CascadeError
from cascade.pipeline.base import Pipeline, format_call
from cascade.pipeline.candidates import Candidates, sort_within_queries

if TYPE_CHECKING:
    from cascade.index.index import Index

ALL = 1 << 30  # "every candidate": a reranker's depth when no cutoff follows it

ScoreFn = Callable[[Sequence[Query], list[np.ndarray], int], list[tuple[np.ndarray, np.ndarray]]]


def index_numbers(cands: Candidates, index: "Index") -> np.ndarray:
    """The candidates' doc numbers in ``index`` (they may come from a run with its own id table)."""
    if cands.space is index or getattr(cands.space, "path", None) == index.path:
        return cands.doc.astype(np.int64)
    ids = cands.space.doc_ids(cands.doc)
    nums = np.empty(len(ids), dtype=np.int64)
    for i, doc_id in enumerate(ids):
        num = index.doc_number(doc_id)
        if num is None:
            raise CascadeError(f"candidate document {doc_id!r} is not in the index {index.path}; "
                               "rerank candidates of the collection the index was built from")
        nums[i] = num
    return nums


class Reranker(Pipeline):
    """Base for stages that re-score incoming candidates; subclasses implement :meth:`score`."""

    name = "rerank"
    cacheable = True

    def __init__(self, index: "Index", k: int = ALL) -> None:
        if k < 1:
            raise CascadeError(f"k must be at least 1 (got {k})")
        self.index = index
        self.k = int(k)

    # -- pipeline protocol ----------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """Parameters that identify this stage (shown in its name, part of its cache key)."""
        return {}

    def key(self) -> tuple[Any, ...]:
        return (self.name, tuple(sorted(self.settings().items())), self.k, self.index.version)

    @property
    def depth(self) -> int:  # type: ignore[override]
        return self.k

    @property
    def space(self) -> "Index":
        return self.index

    def with_depth(self, k: int) -> "Reranker":
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.k = min(int(k), self.k)
        return clone

    def __str__(self) -> str:
        params = dict(self.settings())
        if self.k != ALL:
            params["k"] = self.k
        return format_call(self.name, params=params)

    def execute(self, executor: object, queries: Sequence[Query], candidates: Candidates | None) -> Candidates:
        if candidates is None:
            raise CascadeError(f"{self.name} reranks candidates: put a first stage before it, e.g. 'bm25 % 100 >> {self.name}'")
        return self.rerank(queries, candidates)

    # -- work -----------------------------------------------------------------------------

    def score(self, queries: Sequence[Query], docs: list[np.ndarray], k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each query, (positions into its docs, scores) of at least its top ``k`` by the new
        score; every position when a stage cannot prune."""
        raise NotImplementedError

    def rerank(self, queries: Sequence[Query], candidates: Candidates) -> Candidates:
        by_id = {q.id: q for q in queries}
        ordered = [by_id[qid] if qid in by_id else Query(qid, "") for qid in candidates.query_ids]
        nums = index_numbers(candidates, self.index)
        bounds = candidates.offsets
        docs = [nums[bounds[i]:bounds[i + 1]] for i in range(len(ordered))]
        start = time.perf_counter()
        results = self.score(ordered, docs, self.k)
        elapsed = time.perf_counter() - start
        qidx, doc, score = [], [], []
        for i, (positions, scores) in enumerate(results):
            qidx.append(np.full(len(positions), i, dtype=np.int64))
            doc.append(nums[bounds[i] + positions])
            score.append(scores)
        out = sort_within_queries(candidates.query_ids, _cat(qidx, np.int64), _cat(doc, np.int32),
                                  _cat(score, np.float32), self.index)
        if self.k != ALL:
            from cascade.pipeline.candidates import cut

            out = cut(out, self.k)
        out.seconds[self.name] = elapsed
        out.query_seconds = np.full(len(ordered), elapsed / max(len(ordered), 1))
        return out


def _cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.empty(0, dtype)
