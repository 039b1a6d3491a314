"""Dense first stage: the top-k documents by dot product with the query's bi-encoder vector.

Reimers & Gurevych, "Sentence-BERT" (EMNLP 2019) bi-encoders. Exact search scans the stored
vectors (:mod:`cascade.retrieve.dense_exact`); ``method="hnsw"`` searches an HNSW graph per
segment (:mod:`cascade.retrieve.hnsw`), built on first use and stored in the index. Document
vectors are encoded once (see :mod:`cascade.models.stored`); only queries are encoded at search
time.

>>> idx = cascade.Index.open("scifact.idx")                               # doctest: +SKIP
>>> dense = Dense(idx, model="minilm", k=100)                              # doctest: +SKIP
>>> dense.search_batch(["what causes diabetes"]).to_run()                  # doctest: +SKIP
"""

from __future__ import annotations

import time
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from cascade.core.candidates import SHARED, Candidates
from cascade.core.nodes import Pipeline, Runner, as_queries, format_call
from cascade.core.params import ParamInfo, check_params, non_defaults
from cascade.core.registry import Context, register_stage
from cascade.core.types import Query
from cascade.filters import compile_filter
from cascade.index.index import Index
from cascade.models.encoders import query_encodings
from cascade.models.stored import dense_vectors, ensure_biencoder
from cascade.retrieve.dense_exact import exact_search, top_k_rows
from cascade.retrieve.hnsw import ensure_graphs, hnsw_search

if TYPE_CHECKING:
    from cascade.index.segment import Segment

MODEL = ParamInfo("model", str, "minilm", "bi-encoder: minilm, minilm-onnx, mpnet, a model directory or hub id")
PARAMS = (
    MODEL,
    ParamInfo("k", int, 1000, "results per query", min=1),
    ParamInfo("method", str, "exact", "exact scan or an approximate HNSW graph", choices=("exact", "hnsw")),
    ParamInfo("ef", int, 256, "HNSW search breadth (method=hnsw)", min=1),
    ParamInfo("where", str, None, "only documents matching this filter", optional=True),
)


class Dense(Pipeline):
    """Dense retrieval with a stored bi-encoder representation (encoded on first use if missing)."""

    name = "dense"
    params = PARAMS

    def __init__(self, index: Index, model: str = "minilm", k: int = 1000, method: str = "exact", ef: int = 256,
                 where: Any = None, progress: Callable[[int], None] | None = None) -> None:
        values = check_params(self.name, PARAMS, {"model": model, "k": k, "method": method, "ef": ef})
        self.index = index
        self.model, self.k, self.method, self.ef = values["model"], values["k"], values["method"], values["ef"]
        expr = compile_filter(where, index.manifest.filter_fields)
        self.where = None if expr is None else str(expr)
        self._progress = progress

    def key(self) -> tuple[Any, ...]:
        return ("dense", self.index.version, self.model, self.k, self.method, self.ef, self.where)

    def limit(self, k: int) -> "Dense":
        return Dense(self.index, self.model, min(k, self.k), self.method, self.ef, self.where, self._progress)

    @property
    def space(self) -> Index:
        return self.index

    def __str__(self) -> str:
        values = {"model": self.model, "k": self.k, "method": self.method, "ef": self.ef, "where": self.where}
        shown = non_defaults(PARAMS, values)
        if self.method == "exact":
            shown.pop("ef", None)
        return format_call("dense", params={"model": self.model, **shown})

    @cached_property
    def _stored(self) -> tuple[list["Segment"], str]:
        return ensure_biencoder(self.index, self.model, tokens=False, progress=self._progress)

    @cached_property
    def _graphs(self) -> tuple[list["Segment"], str]:
        """This snapshot's segments with HNSW graphs over the stored vectors (built on first use)."""
        return ensure_graphs(self.index, *self._stored)

    def prepare(self) -> None:
        """Encode the collection if needed (or build the HNSW graphs) and load the model."""
        self._graphs if self.method == "hnsw" else self._stored  # noqa: B018
        query_encodings(self.model).load()

    def encode_queries(self, queries: Sequence[Query]) -> np.ndarray:
        return query_encodings(self.model).dense([q.text for q in queries])

    def prefetch(self, queries: Sequence[Query]) -> None:
        """Encode the queries on a background thread while the stages before this one run."""
        query_encodings(self.model).prefetch([q.text for q in queries])

    def search_vectors(self, qvecs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Global doc numbers [Q, <=k] and scores for query vectors, over every segment."""
        segments, name = self._stored
        graphs = self._graphs[0] if self.method == "hnsw" else None
        parts_docs, parts_scores = [], []
        allowed_masks = self.index.allowed_docs(self.where)
        for s, (base, seg, allowed) in enumerate(zip(self.index.bases, segments, allowed_masks)):
            if graphs is not None:
                docs, scores = hnsw_search(graphs[s], name, self._graphs[1], qvecs, k, self.ef, allowed)
            else:
                docs, scores = exact_search(dense_vectors(seg, name), qvecs, k, allowed)
            parts_docs.append(docs + base)
            parts_scores.append(scores)
        if not parts_scores:  # an index whose documents were all deleted
            return np.zeros((len(qvecs), 0), np.int64), np.zeros((len(qvecs), 0), np.float32)
        all_scores = np.concatenate(parts_scores, axis=1)
        keep, scores = top_k_rows(all_scores, k)
        return np.take_along_axis(np.concatenate(parts_docs, axis=1), keep, axis=1), scores

    def search_batch(self, queries: Sequence[Query | str], k: int | None = None) -> Candidates:
        """Top ``k`` (default: the stage's) for every query (Query objects or strings)."""
        qs = as_queries(queries)
        k = self.k if k is None else k
        if self.method == "hnsw":
            self._graphs  # build the graphs first (not part of query latency)
        else:
            self._stored  # encode the collection first (not part of query latency)
        begin = time.perf_counter()
        qvecs = self.encode_queries(qs)
        waited = time.perf_counter() - begin
        # the encoding's own cost, wherever it ran: a prefetch ran it while earlier stages ran
        background = max(0.0, query_encodings(self.model).claim_seconds([q.text for q in qs]) - waited)
        docs, scores = self.search_vectors(qvecs, k)
        found = scores > -np.inf
        cands = Candidates.from_lists([q.id for q in qs], [d[m] for d, m in zip(docs, found)],
                                      [s[m] for s, m in zip(scores, found)], self.index)
        cands.seconds[self.name] = time.perf_counter() - begin + background
        cands.background_seconds = background
        return cands.timed(cands.seconds[self.name], SHARED)

    def execute(self, runner: Runner, queries: Sequence[Query], candidates: Candidates | None) -> Candidates:
        return self.search_batch(queries)


def _build(ctx: Context, **params: Any) -> Pipeline:
    return Dense(ctx.index("dense"), progress=ctx.progress("encoding documents"), **params)


register_stage("dense", _build, params=PARAMS, help="dense retrieval by a bi-encoder's vectors (exact or HNSW)")
