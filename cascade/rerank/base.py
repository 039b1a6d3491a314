"""What rerankers share: reading candidates as index documents, writing re-sorted candidates.

A reranker re-scores the incoming candidates (from the index, or the id table of a stored run:
they are mapped to the index by id) and returns them in the index's doc numbers; ``k`` limits
its output (pushed down by ``compile()`` from a following ``% k``), which lets rank-safe
pruning skip candidates that cannot reach the top ``k``.
"""

from __future__ import annotations

import copy
import time
from typing import Any, Sequence

import numpy as np

from cascade.core.candidates import PER_QUERY, SHARED, Candidates, cut, sort_within_queries
from cascade.core.errors import CascadeError
from cascade.core.nodes import Pipeline, Runner, format_call
from cascade.core.params import ParamInfo
from cascade.core.types import Query
from cascade.index.index import Index

ALL = 1 << 30  # "every candidate": a reranker's depth when no cutoff follows it
K = ParamInfo("k", int, None, "keep each query's top k (default: every candidate)", min=1, optional=True)

Scored = list[tuple[np.ndarray, np.ndarray]]  # per query: (positions into its candidates, new scores)


def index_numbers(cands: Candidates, index: Index) -> np.ndarray:
    """The candidates' doc numbers in ``index`` (they may come from a run with its own id table)."""
    if cands.space is index or getattr(cands.space, "passages_of", None) is index:
        return cands.doc.astype(np.int64)  # (documents from to_docs: each is its best passage here)
    ids = cands.space.doc_ids(cands.doc)
    nums = index.doc_numbers(ids)
    if len(nums) and nums.min() < 0:
        missing = sorted({i for i, n in zip(ids, nums.tolist()) if n < 0})
        raise CascadeError(f"{len(missing)} candidate document(s) are not in the index {index.path} "
                           f"(e.g. {', '.join(missing[:3])}); rerank candidates of the collection the index "
                           "was built from")
    return nums


class Reranker(Pipeline):
    """Base for stages that re-score incoming candidates; subclasses implement :meth:`score`
    (or :meth:`score_timed`, to time each query inside the batch)."""

    name = "rerank"
    cacheable = True

    def __init__(self, index: Index, k: int | None = None) -> None:
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise CascadeError(f"{self.name}: k must be a positive integer (got {k!r})")
        self.index = index
        self.k = ALL if k is None else int(k)

    # -- pipeline protocol ----------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """Parameters that identify this stage (shown in its name, part of its cache key)."""
        return {}

    def key(self) -> tuple[Any, ...]:
        return (self.name, tuple(sorted(self.settings().items())), self.k, self.index.version)

    @property
    def space(self) -> Index:
        return self.index

    def limit(self, k: int) -> "Reranker":
        clone = copy.copy(self)  # shares what was loaded (models, stored vectors)
        clone.k = min(int(k), self.k)
        return clone

    def __str__(self) -> str:
        params = dict(self.settings())
        if self.k != ALL:
            params["k"] = self.k
        return format_call(self.name, params=params)

    def execute(self, runner: Runner, queries: Sequence[Query], candidates: Candidates | None) -> Candidates:
        if candidates is None:
            raise CascadeError(f"{self.name} reranks candidates: put a first stage before it, "
                               f"e.g. 'bm25 % 100 >> {self.name}'")
        return self.rerank(queries, candidates)

    # -- work -----------------------------------------------------------------------------

    def score(self, queries: Sequence[Query], docs: list[np.ndarray], k: int) -> Scored:
        """For each query, (positions into its docs, scores) of at least its top ``k`` by the new
        score; every position when a stage cannot prune."""
        raise NotImplementedError

    def score_timed(self, queries: Sequence[Query], docs: list[np.ndarray], k: int) -> tuple[Scored, np.ndarray | None]:
        """:meth:`score` and, when the stage measures them, each query's seconds (None: only the
        batch was timed)."""
        return self.score(queries, docs, k), None

    def rerank(self, queries: Sequence[Query], candidates: Candidates) -> Candidates:
        by_id = {q.id: q for q in queries}
        ordered = [by_id[qid] if qid in by_id else Query(qid, "") for qid in candidates.query_ids]
        nums = index_numbers(candidates, self.index)
        bounds = candidates.offsets
        docs = [nums[bounds[i]:bounds[i + 1]] for i in range(len(ordered))]
        start = time.perf_counter()
        results, per_query = self.score_timed(ordered, docs, self.k)
        elapsed = time.perf_counter() - start
        qidx, doc, score = [], [], []
        for i, (positions, scores) in enumerate(results):
            qidx.append(np.full(len(positions), i, dtype=np.int64))
            doc.append(nums[bounds[i] + positions])
            score.append(scores)
        out = sort_within_queries(candidates.query_ids, _cat(qidx, np.int64), _cat(doc, np.int32),
                                  _cat(score, np.float32), self.index)
        if self.k != ALL:
            out = cut(out, self.k)
        out.seconds[self.name] = elapsed
        if per_query is None:
            return out.timed(elapsed, SHARED)
        return out.timed(per_query, PER_QUERY)


def _cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.empty(0, dtype)
