"""Scatter-gather first stages over a :class:`~cascade.scale.ShardedIndex`.

BM25 takes two rounds per batch, like a distributed search engine's "DFS" phase: every shard
gives the live df of the batch's terms, the sums (with N and the total length) go back with
the queries, and every shard answers its top k scored with those collection statistics. Dense
(and any per-document score) needs one round: query vectors are encoded once here and sent.
The merge orders by score, then by collection position (``_order``), the order one index of
the same documents uses (its doc numbers); each shard's top k is in that order too, so the
merged top k is the single index's, ids and scores bit for bit.

Results are :class:`~cascade.core.candidates.Candidates` in the sharded index's doc-number
space (shard base + local number), so they fuse (``rrf``, ``+``) and print as usual.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from cascade.core.candidates import SHARED, Candidates
from cascade.core.errors import CascadeError
from cascade.core.nodes import Pipeline, Runner, as_queries, format_call
from cascade.core.params import check_params, non_defaults
from cascade.core.types import Hit, Query
from cascade.index import bm25_formula
from cascade.retrieve import bm25 as bm25_module
from cascade.retrieve import dense as dense_module
from cascade.scale.sharded import ShardedIndex

Ragged = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def merge_shards(parts: Sequence[Ragged], bases: np.ndarray, n_queries: int,
                 k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each query's global top ``k`` of the shards' answers, by score then collection position:
    ragged (offsets, doc numbers in the sharded space, scores)."""
    qidx, docs, scores, orders = [], [], [], []
    for base, (offsets, local, score, order) in zip(bases.tolist(), parts):
        qidx.append(np.repeat(np.arange(n_queries), np.diff(offsets)))
        docs.append(np.asarray(local, dtype=np.int64) + base)
        scores.append(np.asarray(score, dtype=np.float32))
        orders.append(np.asarray(order, dtype=np.int64))
    q, d, s, o = (np.concatenate(x) for x in (qidx, docs, scores, orders))
    pick = np.lexsort((o, -s, q))
    q, d, s = q[pick], d[pick], s[pick]
    counts = np.bincount(q, minlength=n_queries)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    keep = (np.arange(len(q)) - starts[q]) < k
    out = np.zeros(n_queries + 1, dtype=np.int64)
    np.cumsum(np.minimum(counts, k), out=out[1:])
    return out, d[keep], s[keep]


def global_stats(index: ShardedIndex, texts: list[str]) -> tuple[int, int, tuple[str, ...], dict[str, int]]:
    """Round one: the collection's N, total length and df of the batch's terms (summed over shards)."""
    df: dict[str, int] = {}
    for part in index.backend.scatter("df", [(texts,)] * index.n_shards):
        for term, count in part.items():
            df[term] = df.get(term, 0) + count
    return index.n_docs, index.total_length, index.versions, df


def sharded_bm25(index: ShardedIndex, texts: list[str], k: int, k1: float = bm25_formula.K1,
                 b: float = bm25_formula.B, where: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BM25 top ``k`` over every shard, scored as one index: (offsets, doc numbers, scores)."""
    stats = global_stats(index, texts)
    parts = index.backend.scatter("bm25", [(texts, k, stats, k1, b, where)] * index.n_shards)
    return merge_shards(parts, index.bases, len(texts), k)


def sharded_dense(index: ShardedIndex, vectors: np.ndarray, k: int, model: str,
                  where: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense top ``k`` over every shard for query vectors: (offsets, doc numbers, scores)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    parts = index.backend.scatter("dense", [(vectors, k, model, where)] * index.n_shards)
    return merge_shards(parts, index.bases, len(vectors), k)


class _ShardedStage(Pipeline):
    """What the sharded first stages share: candidates in the sharded index's space."""

    index: ShardedIndex
    k: int

    @property
    def space(self) -> ShardedIndex:
        return self.index

    def _candidates(self, qs: Sequence[Query], found: tuple[np.ndarray, np.ndarray, np.ndarray],
                    seconds: float) -> Candidates:
        offsets, docs, scores = found
        if len(docs) and docs.max() > np.iinfo(np.int32).max:
            raise CascadeError("sharded index too large for int32 doc numbers in candidates")
        cands = Candidates([q.id for q in qs], offsets, docs, scores, self.index)
        cands.seconds[self.name] = seconds
        return cands.timed(seconds, SHARED)

    def execute(self, runner: Runner, queries: Sequence[Query], candidates: Candidates | None) -> Candidates:
        return self.search_batch(queries)

    def search_batch(self, queries: Sequence[Query | str], k: int | None = None) -> Candidates:
        raise NotImplementedError

    def hits(self, query: str, k: int = 10) -> list[Hit]:
        """Top ``k`` hits for one query string, with stored titles and texts."""
        cands = self.search_batch([query], k)
        return [Hit(i, s, rank, title, text, meta) for rank, ((i, title, text, meta), s)
                in enumerate(zip(self.index.doc_fields(cands.doc), cands.score.tolist()), 1)]


class ShardedBM25(_ShardedStage):
    """BM25 over a sharded index: the scores one index of all its documents gives."""

    name = "bm25"
    params = bm25_module.PARAMS

    def __init__(self, index: ShardedIndex, k1: float = bm25_formula.K1, b: float = bm25_formula.B, k: int = 1000,
                 where: str | None = None) -> None:
        values = check_params(self.name, self.params, {"k1": k1, "b": b, "k": k})
        self.index, self.k1, self.b, self.k = index, values["k1"], values["b"], values["k"]
        self.where = None if where is None else str(where)

    def key(self) -> tuple[Any, ...]:
        return ("sharded-bm25", self.k1, self.b, self.k, self.where, self.index.version)

    def limit(self, k: int) -> "ShardedBM25":
        return ShardedBM25(self.index, self.k1, self.b, min(k, self.k), self.where)

    def __str__(self) -> str:
        return format_call(self.name, (), non_defaults(self.params, {"k1": self.k1, "b": self.b, "k": self.k,
                                                                     "where": self.where}))

    def search_batch(self, queries: Sequence[Query | str], k: int | None = None) -> Candidates:
        qs = as_queries(queries)
        start = time.perf_counter()
        found = sharded_bm25(self.index, [q.text for q in qs], self.k if k is None else k, self.k1, self.b,
                             self.where)
        return self._candidates(qs, found, time.perf_counter() - start)


class ShardedDense(_ShardedStage):
    """Exact dense search over a sharded index (vectors stored per shard: :meth:`encode`)."""

    name = "dense"
    params = dense_module.PARAMS

    def __init__(self, index: ShardedIndex, model: str = "minilm", k: int = 1000, where: str | None = None) -> None:
        values = check_params(self.name, self.params, {"model": model, "k": k})
        self.index, self.model, self.k = index, values["model"], values["k"]
        self.where = None if where is None else str(where)

    def key(self) -> tuple[Any, ...]:
        return ("sharded-dense", self.model, self.k, self.where, self.index.version)

    def limit(self, k: int) -> "ShardedDense":
        return ShardedDense(self.index, self.model, min(k, self.k), self.where)

    def __str__(self) -> str:
        return format_call(self.name, params={"model": self.model, **non_defaults(self.params, {"k": self.k})})

    def prepare(self) -> None:
        encode(self.index, self.model)

    def search_batch(self, queries: Sequence[Query | str], k: int | None = None) -> Candidates:
        from cascade.models.encoders import query_encodings

        qs = as_queries(queries)
        self.prepare()
        start = time.perf_counter()
        vectors = query_encodings(self.model).dense([q.text for q in qs])
        found = sharded_dense(self.index, vectors, self.k if k is None else k, self.model, self.where)
        return self._candidates(qs, found, time.perf_counter() - start)


def encode(index: ShardedIndex, model: str) -> list[dict[str, Any]]:
    """Store ``model``'s vectors in every shard lacking them, each shard by its own worker (in
    parallel on Ray: one encoding actor per shard); per-shard seconds and documents."""
    reports = index.backend.scatter("encode", [(model,)] * index.n_shards)
    index.refresh()
    return list(reports)


class ShardedRerank(Pipeline):
    """A reranking pipeline (a string, e.g. ``"dense_rerank(model=minilm)"`` or ``"cross_encoder"``)
    run on merged candidates where they live: each shard's worker reranks its share with the
    stage built on its own index, and the answers merge by score (then collection position).
    Right for rerankers that score each document on its own (all of Cascade's neural ones): the
    same ids as on one index, scores equal up to one float32 rounding (other BLAS shapes)."""

    name = "rerank"

    def __init__(self, index: ShardedIndex, spec: str) -> None:
        if not isinstance(spec, str) or not spec.strip():
            raise CascadeError("ShardedRerank takes a reranking pipeline string, e.g. 'dense_rerank(model=minilm)'")
        self.index, self.spec = index, spec

    def key(self) -> tuple[Any, ...]:
        return ("sharded-rerank", self.spec, self.index.version)

    @property
    def space(self) -> ShardedIndex:
        return self.index

    def __str__(self) -> str:
        return f"sharded({self.spec!r})"

    def execute(self, runner: Runner, queries: Sequence[Query], candidates: Candidates | None) -> Candidates:
        if candidates is None or candidates.space is not self.index:
            raise CascadeError("ShardedRerank reranks candidates of its sharded index (put a sharded first stage "
                               "before it: ShardedBM25(sidx) >> ShardedRerank(sidx, ...))")
        start = time.perf_counter()
        bases, n = self.index.bases, self.index.n_shards
        qidx = np.repeat(np.arange(len(queries)), np.diff(candidates.offsets))
        shard = np.searchsorted(bases, candidates.doc, side="right") - 1
        ids, texts = [q.id for q in queries], [q.text for q in queries]
        calls = []
        for s in range(n):
            mine = shard == s
            offsets = np.zeros(len(queries) + 1, dtype=np.int64)
            np.cumsum(np.bincount(qidx[mine], minlength=len(queries)), out=offsets[1:])
            calls.append((self.spec, ids, texts, offsets, candidates.doc[mine].astype(np.int64) - bases[s],
                          candidates.score[mine]))
        parts = self.index.backend.scatter("rerank", calls)
        depth = int(np.diff(candidates.offsets).max(initial=0))
        found = merge_shards(parts, bases, len(queries), max(depth, 1))
        out = Candidates(ids, *found, self.index)
        out.seconds[self.name] = time.perf_counter() - start
        return out.timed(out.seconds[self.name], SHARED)


class ShardedStage(_ShardedStage):
    """Any first-stage pipeline string run by every shard on its own index, the answers merged
    by score: for stages whose scores depend on the query and the document alone, e.g. learned
    sparse in its default mode (``"sparse(model=splade-tiny)"``), or ``"dense(method=hnsw)"`` (approximate
    either way: each shard has its own graph).
    Not for stages using collection statistics (``bm25``: :class:`ShardedBM25`; ``rm3``;
    ``sparse(mode=inference_free)``, whose idf is the shard's)."""

    name = "sharded"

    def __init__(self, index: ShardedIndex, spec: str, k: int = 1000) -> None:
        if not isinstance(spec, str) or not spec.strip():
            raise CascadeError("ShardedStage takes a first-stage pipeline string, e.g. 'sparse(model=splade-tiny)'")
        self.index, self.spec, self.k = index, spec, check_params("sharded", bm25_module.PARAMS[2:3], {"k": k})["k"]

    def key(self) -> tuple[Any, ...]:
        return ("sharded-stage", self.spec, self.k, self.index.version)

    def limit(self, k: int) -> "ShardedStage":
        return ShardedStage(self.index, self.spec, min(k, self.k))

    def __str__(self) -> str:
        return f"sharded({self.spec!r}, k={self.k})"

    def search_batch(self, queries: Sequence[Query | str], k: int | None = None) -> Candidates:
        qs = as_queries(queries)
        k = self.k if k is None else k
        start = time.perf_counter()
        call = (self.spec, [q.id for q in qs], [q.text for q in qs], k)
        parts = self.index.backend.scatter("first_stage", [call] * self.index.n_shards)
        return self._candidates(qs, merge_shards(parts, self.index.bases, len(qs), k), time.perf_counter() - start)
