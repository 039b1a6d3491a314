"""Bi-encoder rescoring: re-order candidates by the dot product of stored document vectors with
the query vector (Reimers & Gurevych, "Sentence-BERT", EMNLP 2019). Document vectors come
from the index (encoded once); only the queries are encoded, all in one batch.

>>> pipe = cascade.parse("bm25 % 100 >> dense_rerank(model=minilm)", index=idx)  # doctest: +SKIP
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, Callable, Sequence

import numpy as np

from cascade.core.nodes import Pipeline
from cascade.core.params import check_params
from cascade.core.registry import Context, register_stage
from cascade.core.types import Query
from cascade.index.index import Index
from cascade.models.encoders import query_encodings
from cascade.models.stored import dense_vectors, ensure_biencoder
from cascade.rerank.base import K, Reranker, Scored
from cascade.retrieve.dense import MODEL

PARAMS = (MODEL, K)


class DenseRerank(Reranker):
    """Rescore candidates with ``model``'s stored dense vectors."""

    name = "dense_rerank"
    params = PARAMS

    def __init__(self, index: Index, model: str = "minilm", k: int | None = None,
                 progress: Callable[[int], None] | None = None) -> None:
        values = check_params(self.name, PARAMS, {"model": model, "k": k})
        super().__init__(index, values["k"])
        self.model = values["model"]
        self._progress = progress

    def settings(self) -> dict[str, Any]:
        return {"model": self.model} if self.model != "minilm" else {}

    @cached_property
    def _vectors(self) -> list[np.ndarray]:
        segments, name = ensure_biencoder(self.index, self.model, tokens=False, progress=self._progress)
        return [dense_vectors(seg, name) for seg in segments]

    def prepare(self) -> None:
        """Encode the collection if needed and load the model."""
        self._vectors  # noqa: B018
        query_encodings(self.model).load()

    def score(self, queries: Sequence[Query], docs: list[np.ndarray], k: int) -> Scored:
        parts = self._vectors
        bases = self.index.bases
        texts = [q.text for q in queries]
        qvecs = query_encodings(self.model).dense(texts)
        query_encodings(self.model).claim_seconds(texts)  # its cost is in this stage's own clock
        out = []
        for q, nums in zip(qvecs, docs):
            segs = np.searchsorted(bases, nums, side="right") - 1
            rows = np.empty((len(nums), qvecs.shape[1]), dtype=np.float32)
            for s in np.unique(segs):
                mask = segs == s
                rows[mask] = parts[s][nums[mask] - bases[s]]
            out.append((np.arange(len(nums)), rows @ q))
        return out


def _build(ctx: Context, **params: Any) -> Pipeline:
    return DenseRerank(ctx.index("dense_rerank"), progress=ctx.progress("encoding documents"), **params)


register_stage("dense_rerank", _build, params=PARAMS, help="rescore candidates by a bi-encoder's dense vectors")
