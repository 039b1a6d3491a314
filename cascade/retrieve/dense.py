"""Dense first stage: the top-k documents by dot product with the query's bi-encoder vector.

Exact search multiplies the query vectors with each segment's memory-mapped float32 document
vectors in chunks (one BLAS call per chunk for all queries at once) and keeps a running top-k;
``method="hnsw"`` searches an HNSW graph per segment (Malkov & Yashunin, "Efficient and robust
approximate nearest neighbor search using Hierarchical Navigable Small World graphs", TPAMI
2018; faiss), built on first use and stored in the index. Document vectors are encoded once
(see :mod:`cascade.models.stored`); only queries are encoded at search time.

>>> idx = cascade.Index.open("scifact.idx")                               # doctest: +SKIP
>>> dense = Dense(idx, model="minilm", k=100)                              # doctest: +SKIP
>>> dense.search_batch([cascade.Query("1", "what causes diabetes")]).to_run()  # doctest: +SKIP
"""

from __future__ import annotations

import time
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from cascade.data.types import Query
from cascade.errors import CascadeError
from cascade.pipeline.base import Pipeline, format_call
from cascade.pipeline.candidates import Candidates

if TYPE_CHECKING:
    from cascade.index.index import Index

CHUNK = 16384  # document vectors converted to float32 per BLAS call
METHODS = ("exact", "hnsw")


def top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the column numbers and scores of the k best, best first (ties: lower column first)."""
    k = min(k, scores.shape[1])
    if k == 0:
        return np.zeros((len(scores), 0), np.int64), np.zeros((len(scores), 0), scores.dtype)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1] else \
        np.tile(np.arange(scores.shape[1]), (len(scores), 1))
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)


def exact_search(vectors: np.ndarray, queries: np.ndarray, k: int,
                 allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(doc numbers[Q, k'], scores[Q, k']) of the best k by dot product over ``vectors`` [n, d];
    with ``allowed`` (bool[n]) only those rows are scored (pre-filtering: k results whenever k
    rows are allowed)."""
    best_docs = np.zeros((len(queries), 0), np.int64)
    best_scores = np.zeros((len(queries), 0), np.float32)
    rows = None if allowed is None else np.flatnonzero(allowed)
    total = len(vectors) if rows is None else len(rows)
    for start in range(0, total, CHUNK):
        if rows is None:
            chunk = np.asarray(vectors[start:start + CHUNK], dtype=np.float32)
            numbers = np.arange(start, start + len(chunk))
        else:
            numbers = rows[start:start + CHUNK]
            chunk = np.asarray(vectors[numbers], dtype=np.float32)
        scores = queries @ chunk.T
        docs, vals = top_k_rows(scores, k)
        merged_scores = np.concatenate([best_scores, vals], axis=1)
        merged_docs = np.concatenate([best_docs, numbers[docs]], axis=1)
        keep, best_scores = top_k_rows(merged_scores, k)
        best_docs = np.take_along_axis(merged_docs, keep, axis=1)
    return best_docs, best_scores


class Dense(Pipeline):
    """Dense retrieval with a stored bi-encoder representation (encoded on first use if missing)."""

    def __init__(self, index: "Index", model: str = "minilm", k: int = 1000, method: str = "exact",
                 ef: int = 256, where: Any = None, progress: Callable[[int], None] | None = None) -> None:
        from cascade.filters import compile_filter

        if method not in METHODS:
            raise CascadeError(f"dense method must be one of {', '.join(METHODS)} (got {method!r})")
        if k < 1:
            raise CascadeError(f"k must be at least 1 (got {k})")
        self.index, self.model, self.k, self.method, self.ef = index, model, int(k), method, int(ef)
        expr = compile_filter(where, index.manifest.filter_fields)
        self.where = None if expr is None else str(expr)
        self.name = "dense"
        self._progress = progress

    def key(self) -> tuple[Any, ...]:
        return ("dense", self.index.version, self.model, self.k, self.method, self.ef, self.where)

    @property
    def depth(self) -> int:  # type: ignore[override]
        return self.k

    def with_depth(self, k: int) -> "Dense":
        return Dense(self.index, self.model, min(k, self.k), self.method, self.ef, self.where, self._progress)

    @property
    def space(self) -> "Index":
        return self.index

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model}
        if self.method != "exact":
            out.update(method=self.method, ef=self.ef)
        if self.where is not None:
            out["where"] = self.where
        return out

    def __str__(self) -> str:
        return format_call("dense", params={**self.params(), "k": self.k} if self.k != 1000 else self.params())

    @cached_property
    def _stored(self) -> tuple["Index", str]:
        from cascade.models.stored import ensure_biencoder

        index, name = ensure_biencoder(self.index, self.model, tokens=False, progress=self._progress)
        return index, name

    @cached_property
    def _graphs(self) -> tuple["Index", str]:
        """The index with HNSW graphs over the stored vectors (built on first use), and their name."""
        from cascade.retrieve.hnsw import ensure_graphs

        return ensure_graphs(*self._stored)

    @cached_property
    def encoder(self) -> Any:
        from cascade.models.encoders import shared_encoder

        return shared_encoder(self.model)

    def encode_queries(self, queries: Sequence[Query]) -> np.ndarray:
        return self.encoder.encode([q.text for q in queries]).dense

    def search_vectors(self, qvecs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Global doc numbers [Q, <=k] and scores for query vectors, over every segment."""
        from cascade.models.stored import dense_vectors

        index, name = self._graphs if self.method == "hnsw" else self._stored
        parts_docs, parts_scores = [], []
        for base, seg, allowed in zip(index.bases, index.segments, index.allowed_docs(self.where)):
            if self.method == "hnsw":
                from cascade.retrieve.hnsw import hnsw_search

                docs, scores = hnsw_search(seg, self._stored[1], name, qvecs, k, self.ef, allowed)
            else:
                docs, scores = exact_search(dense_vectors(seg, name), qvecs, k, allowed)
            parts_docs.append(docs + base)
            parts_scores.append(scores)
        all_scores = np.concatenate(parts_scores, axis=1)
        keep, scores = top_k_rows(all_scores, k)
        return np.take_along_axis(np.concatenate(parts_docs, axis=1), keep, axis=1), scores

    def search_batch(self, queries: Sequence[Query], k: int | None = None) -> Candidates:
        k = self.k if k is None else k
        self._stored  # encode the collection first (not part of query latency)
        begin = time.perf_counter()
        docs, scores = self.search_vectors(self.encode_queries(queries), k)
        found = scores > -np.inf
        per_query = (time.perf_counter() - begin) / max(len(queries), 1)
        cands = Candidates.from_lists([q.id for q in queries], [d[m] for d, m in zip(docs, found)],
                                      [s[m] for s, m in zip(scores, found)], self.index)
        cands.seconds[self.name] = time.perf_counter() - begin
        cands.query_seconds = np.full(len(queries), per_query)
        return cands

    def execute(self, executor: object, queries: Sequence[Query], candidates: Candidates | None) -> Candidates:
        return self.search_batch(queries)
