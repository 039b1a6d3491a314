"""What runs next to one shard: a Ray actor's body, or an object in this process.

Every method takes and returns plain values (lists, dicts, numpy arrays), so the same class
serves both. BM25 runs with the *collection's* statistics (:class:`ShardBM25`): N and the
live length summed over shards, and each query term's df summed over shards, exactly as one
index sums them over its segments (:class:`cascade.retrieve.bm25.QueryTerms`); so a shard's
scores are the scores one index of all the documents gives, bit for bit.
"""

from __future__ import annotations

import os
import time
from typing import Any, Sequence

import numpy as np

from cascade.core.types import Doc
from cascade.index import bm25_formula
from cascade.index.index import Index
from cascade.retrieve.bm25 import BM25, QueryTerms, query_terms
from cascade.scale.layout import ORDER

Ragged = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # offsets, local docs, scores, orders


class GlobalStats:
    """The collection's BM25 statistics: live documents, their total length, and the global
    df of every query term seen so far (summed over shards). ``key`` names the shard snapshots
    they were counted on."""

    def __init__(self, n_docs: int, total_length: int, key: tuple[str, ...]) -> None:
        self.n_docs, self.total_length, self.key = n_docs, total_length, key
        self.df: dict[str, int] = {}

    @property
    def avgdl(self) -> float:
        """As :attr:`Index.avg_doc_length` computes it: integer total over integer count."""
        return self.total_length / self.n_docs if self.n_docs else 0.0


class GlobalTerms(QueryTerms):
    """A shard's query analysis whose idf comes from the collection's N and df."""

    def __init__(self, index: Index, stats: GlobalStats) -> None:
        super().__init__(index)
        self.stats = stats
        self.n_docs = stats.n_docs

    def idf(self) -> np.ndarray:
        if len(self._idf) < len(self.terms):
            with self._lock:  # as QueryTerms.idf: what grows, grows under its lock
                done, n = len(self._idf), len(self.terms)
                df = np.array([self.stats.df.get(t, 0) for t in self.terms[done:n]], dtype=np.int64)
                more = np.where(df > 0, bm25_formula.idf(self.n_docs, df), 0.0)
                self._idf = np.concatenate([self._idf, more])
        return self._idf


class ShardBM25(BM25):
    """BM25 over one shard, scored with the collection's statistics."""

    def __init__(self, index: Index, stats: GlobalStats, k1: float, b: float, where: Any = None) -> None:
        super().__init__(index, k1=k1, b=b, where=where)
        self.stats = stats
        self._terms = GlobalTerms(index, stats)

    def query_terms(self) -> QueryTerms:
        return self._terms

    def avg_doc_length(self) -> float:
        return self.stats.avgdl


def local_df(index: Index, texts: Sequence[str]) -> dict[str, int]:
    """Live df in this shard of every analysed term of ``texts`` that some segment holds."""
    terms = query_terms(index)
    numbers = terms.numbers(list(texts))
    ids = np.unique(numbers[numbers >= 0])
    df = np.zeros(len(ids), dtype=np.int64)
    for s, seg in enumerate(index.segments):
        local = terms.segment_numbers(s)[ids]
        present = local >= 0
        df[present] += seg.live_df[local[present]]
    return {terms.terms[t]: int(d) for t, d in zip(ids.tolist(), df.tolist())}


def doc_orders(index: Index, nums: np.ndarray) -> np.ndarray:
    """The collection position (``_order`` column) of global doc numbers of ``index``."""
    out = np.empty(len(nums), dtype=np.int64)
    if not len(nums):
        return out
    seg = np.searchsorted(index.bases, nums, side="right") - 1
    for s in np.unique(seg).tolist():
        at = np.flatnonzero(seg == s)
        out[at] = index.segments[s].column(ORDER).values[nums[at] - index.bases[s]]
    return out


def strip_order(meta: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in meta.items() if key != ORDER}


class ShardWorker:
    """One shard's searcher and writer. ``delay`` (seconds slept before each search) exists for
    fault tests: it keeps a call in flight long enough to kill its actor."""

    def __init__(self, path: str, name: str, delay: float = 0.0) -> None:
        self.path, self.name, self.delay = path, name, delay
        self.index = Index.open(path)
        self._bm25: dict[tuple[Any, ...], ShardBM25] = {}
        self._rerankers: dict[str, Any] = {}  # pipeline string -> stage on this snapshot

    # -- state ----------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        index = self.index
        return {"name": self.name, "n_docs": index.n_docs, "total_length": index.manifest.total_length,
                "n_slots": index.n_slots, "version": index.version, "generation": index.generation,
                "pid": os.getpid()}

    def refresh(self) -> dict[str, Any]:
        fresh = self.index.refresh()
        if fresh is not self.index:
            self.index, self._bm25, self._rerankers = fresh, {}, {}
        return self.info()

    def max_order(self) -> int:
        """The largest collection position any slot of this shard holds (-1 when empty)."""
        best = -1
        for seg in self.index.segments:
            values = seg.column(ORDER).values
            if len(values):
                best = max(best, int(values.max()))
        return best

    # -- searching ------------------------------------------------------------------------

    def df(self, texts: Sequence[str]) -> dict[str, int]:
        return local_df(self.index, texts)

    def bm25(self, texts: Sequence[str], k: int, stats: tuple[int, int, tuple[str, ...], dict[str, int]],
             k1: float = bm25_formula.K1, b: float = bm25_formula.B, where: str | None = None) -> Ragged:
        """Top ``k`` of this shard for each text, scored with the collection's statistics
        ``(n_docs, total_length, key, df)``: (offsets, local doc numbers, scores, orders)."""
        self._pause()
        n_docs, total_length, key, df = stats
        cache_key = (k1, b, where, n_docs, total_length, key)
        stage = self._bm25.get(cache_key)
        if stage is None:
            self._bm25.clear()
            stage = self._bm25[cache_key] = ShardBM25(self.index, GlobalStats(n_docs, total_length, key), k1, b, where)
        stage.stats.df.update(df)
        offsets, docs, scores = stage.rank(list(texts), k)
        return offsets, docs, scores, doc_orders(self.index, np.asarray(docs, dtype=np.int64))

    def dense(self, vectors: np.ndarray, k: int, model: str, where: str | None = None) -> Ragged:
        """Top ``k`` of this shard by dot product with each query vector (stored ``model`` vectors)."""
        from cascade.retrieve.dense import Dense

        self._pause()
        docs, scores = Dense(self.index, model=model, k=k, where=where).search_vectors(vectors, k)
        found = scores > -np.inf
        offsets = np.zeros(len(docs) + 1, dtype=np.int64)
        np.cumsum(found.sum(axis=1), out=offsets[1:])
        flat = docs[found].astype(np.int64)
        return offsets, flat, scores[found].astype(np.float32), doc_orders(self.index, flat)

    def load_model(self, model: str) -> float:
        """Load ``model`` now (imports, weights); seconds taken."""
        from cascade.models.encoders import query_encodings

        start = time.perf_counter()
        query_encodings(model).load()
        return time.perf_counter() - start

    def first_stage(self, spec: str, query_ids: list[str], texts: list[str], k: int) -> Ragged:
        """Run the first-stage pipeline ``spec`` (e.g. "sparse(model=...)") on this shard: its top
        ``k`` per query with orders (only right for scores that depend on the document alone)."""
        from cascade.core.types import Query
        from cascade.pipeline.parse import parse

        stage = self._rerankers.get(spec)
        if stage is None:
            stage = self._rerankers[spec] = parse(spec, index=self.index)
        out = stage.search([Query(q, t) for q, t in zip(query_ids, texts)], k)
        flat = out.doc.astype(np.int64)
        return out.offsets, flat, out.score, doc_orders(self.index, flat)

    def rerank(self, spec: str, query_ids: list[str], texts: list[str], offsets: np.ndarray, docs: np.ndarray,
               scores: np.ndarray) -> Ragged:
        """Run the reranking pipeline ``spec`` (e.g. "dense_rerank(model=minilm)") on this shard's
        share of merged candidates (local doc numbers): its ragged answer with orders."""
        from cascade.core.candidates import Candidates
        from cascade.core.types import Query
        from cascade.pipeline.parse import parse

        stage = self._rerankers.get(spec)
        if stage is None:
            stage = self._rerankers[spec] = parse(spec, index=self.index)
        cands = Candidates(list(query_ids), offsets, docs, scores, self.index)
        out = stage([Query(q, t) for q, t in zip(query_ids, texts)], cands)
        flat = out.doc.astype(np.int64)
        return out.offsets, flat, out.score, doc_orders(self.index, flat)

    def encode(self, model: str) -> dict[str, Any]:
        """Store ``model``'s bi-encoder vectors for every segment lacking them; seconds taken."""
        from cascade.models.stored import ensure_biencoder

        start = time.perf_counter()
        ensure_biencoder(self.index, model, tokens=False)
        seconds = time.perf_counter() - start
        self.refresh()
        return {"seconds": seconds, "docs": self.index.n_docs}

    def _pause(self) -> None:
        if self.delay:
            time.sleep(self.delay)

    # -- documents ------------------------------------------------------------------------

    def doc_fields(self, nums: Sequence[int]) -> list[tuple[str, str, str, dict[str, Any]]]:
        return [(i, title, text, strip_order(meta)) for i, title, text, meta in self.index.doc_fields(nums)]

    def doc_numbers(self, ids: Sequence[str]) -> np.ndarray:
        return self.index.doc_numbers(list(ids))

    # -- writing --------------------------------------------------------------------------

    def write(self, docs: list[Doc], update: bool, merge: bool = True) -> tuple[int, int]:
        """Add (or add-or-replace) documents already carrying their ``_order`` as one commit."""
        counts = self.index.write(docs, update=update, merge=merge)
        self.refresh()
        return counts

    def delete(self, ids: Sequence[str], where: str | None = None) -> int:
        count = self.index.delete(list(ids), where=where)
        self.refresh()
        return count

    def optimize(self) -> None:
        self.index.optimize()
        self.refresh()

    def close(self) -> None:
        self.index.close()
