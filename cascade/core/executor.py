"""Running pipelines: shared sub-pipelines run once, outputs cached, every stage timed.

Within one executor, a node fed the same input (identified by the key of the chain that
produced it) is computed once; an experiment runs all its pipelines through one executor, so
``bm25 % 1000`` shared by three pipelines runs once. Stages with ``cacheable = True`` also go
through an :class:`OutputCache` when one is given (the on-disk
:class:`~cascade.pipeline.cache.StageCache`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol, Sequence

import numpy as np

from cascade.core.candidates import SHARED, Candidates, DocIdSpace, query_set_hash
from cascade.core.types import Query

if TYPE_CHECKING:
    from cascade.core.nodes import Pipeline


class OutputCache(Protocol):
    """Stored stage outputs, by node key and query-set digest."""

    def get(self, key: Any, queries_hash: str, space: DocIdSpace) -> tuple[Candidates, float] | None: ...

    def put(self, key: Any, queries_hash: str, cands: Candidates, seconds: float) -> None: ...

    def has(self, key: Any, queries_hash: str) -> bool: ...


@dataclass
class StageRecord:
    """What one node cost and produced."""

    label: str
    seconds: float  # wall time including the children it needed (even when they were shared)
    query_seconds: np.ndarray  # each query's latency (see cascade.core.candidates)
    timing: str  # how they were measured: PER_QUERY, SAMPLED or SHARED
    latency_sample: np.ndarray | None  # per-query latencies for percentiles, if any
    candidates: Candidates
    cached: bool = False
    prepare_seconds: float = 0.0  # one-off work before the clock started (models, kernels, encoding)


class Executor:
    """Runs nodes, memoising by (what produced the input, node key), timing each."""

    def __init__(self, cache: OutputCache | None = None) -> None:
        self.cache = cache
        self.memo: dict[Any, Candidates] = {}
        self.records: dict[Any, StageRecord] = {}
        self.calls: dict[Any, int] = {}  # memo key -> times actually computed (for tests and reports)
        self._borrowed: list[float] = []  # per running node: time of shared children it reused
        self._excluded: list[float] = []  # per running node: preparation its children did on its clock
        self._queries_hash: str | None = None
        self._queries: Sequence[Query] | None = None

    def run(self, node: "Pipeline", queries: Sequence[Query], candidates: Candidates | None = None) -> Candidates:
        """Output of ``node`` on ``queries`` given ``candidates`` (memoised by key and input)."""
        if self._queries is not queries:
            self._queries, self._queries_hash = queries, query_set_hash(queries)
            self.memo.clear()
            if candidates is None:
                self.prefetch(node, queries)
        memo_key = (getattr(candidates, "origin", None), node.key())
        hit = self.memo.get(memo_key)
        if hit is not None:
            if self._borrowed:
                self._borrowed[-1] += self.records[memo_key].seconds
            return hit
        out = self._compute(node, memo_key, queries, candidates)
        if out.origin is not None:  # a node passed its input through unchanged: don't relabel that
            out = replace(out)
        out.origin = memo_key
        self.memo[memo_key] = out
        return out

    def prefetch(self, node: "Pipeline", queries: Sequence[Query]) -> None:
        """Let each first stage under ``node`` that will run (output neither memoised nor in the
        stage cache) start its background work for ``queries``: encoding them then overlaps the
        stages that run before it (BM25 loading its kernels and searching, say)."""
        key = (None, node.key())
        assert self._queries_hash is not None  # set by run() for this query set
        if key in self.memo or (self.cache is not None and node.cacheable and self.cache.has(key, self._queries_hash)):
            return
        node.prefetch(queries)
        for child in node.input_children():
            self.prefetch(child, queries)

    def _compute(self, node: "Pipeline", memo_key: Any, queries: Sequence[Query],
                 candidates: Candidates | None) -> Candidates:
        cache = self.cache if node.cacheable else None
        assert self._queries_hash is not None
        if cache is not None:
            found = cache.get(memo_key, self._queries_hash, node.space)  # type: ignore[attr-defined]
            if found is not None:
                out, seconds = found
                self._record(memo_key, node, out, seconds, cached=True)
                return out
        start = time.perf_counter()
        node.prepare()  # one-off work (loading a model, encoding a collection) is not query time
        prepared = time.perf_counter() - start
        self._borrowed.append(0.0)
        self._excluded.append(0.0)
        start = time.perf_counter()
        try:
            out = node.execute(self, queries, candidates)
        finally:
            wall = time.perf_counter() - start
            borrowed = self._borrowed.pop()
            excluded = self._excluded.pop()
        if self._excluded:  # the node that ran this one: its clock saw this preparation too
            self._excluded[-1] += prepared + excluded
        background, out.background_seconds = out.background_seconds, 0.0
        for i in range(len(self._borrowed)):  # no running caller's clock saw the background work either
            self._borrowed[i] += background
        self.calls[memo_key] = self.calls.get(memo_key, 0) + 1
        if out.query_ids != [q.id for q in queries]:
            raise RuntimeError(f"stage {node} returned results for other queries than it was given")
        seconds = wall + borrowed - excluded + background
        self._record(memo_key, node, out, seconds, cached=False)
        self.records[memo_key].prepare_seconds = prepared + excluded
        if cache is not None:
            cache.put(memo_key, self._queries_hash, out, seconds)
        return out

    def _record(self, memo_key: Any, node: "Pipeline", out: Candidates, seconds: float, cached: bool) -> None:
        n = max(len(out), 1)
        if out.query_seconds is not None and len(out.query_seconds) == len(out):
            per_query, timing, sample = out.query_seconds, out.timing, out.latency_sample
        else:  # the stage did not time itself: its wall time shared out
            per_query, timing, sample = np.full(len(out), seconds / n), SHARED, None
        self.records[memo_key] = StageRecord(str(node), seconds, per_query, timing, sample, out, cached)

    def record_of(self, out: Candidates) -> StageRecord:
        return self.records[out.origin]


def run_pipeline(pipeline: "Pipeline", queries: Sequence[Query], *, cache: OutputCache | None = None,
                 executor: Executor | None = None) -> Candidates:
    """Compile and run ``pipeline`` on ``queries`` (through ``executor``, or a new one with ``cache``)."""
    executor = executor or Executor(cache)
    return executor.run(pipeline.compile(), queries)
