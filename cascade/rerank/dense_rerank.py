"""Bi-encoder rescoring: re-order candidates by the dot product of stored document vectors with
the query vector (Reimers & Gurevych, "Sentence-BERT", EMNLP 2019). Document vectors come
from the index (encoded once); only the queries are encoded, all in one batch.

>>> pipe = cascade.pipeline("bm25 % 100 >> dense_rerank(model=minilm)", index=idx)  # doctest: +SKIP
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from cascade.data.types import Query
from cascade.rerank.base import ALL, Reranker

if TYPE_CHECKING:
    from cascade.index.index import Index


class DenseRerank(Reranker):
    """Rescore candidates with ``model``'s stored dense vectors."""

    name = "dense_rerank"

    def __init__(self, index: "Index", model: str = "minilm", k: int = ALL,
                 progress: Callable[[int], None] | None = None) -> None:
        super().__init__(index, k)
        self.model = model
        self._progress = progress

    def settings(self) -> dict[str, Any]:
        return {"model": self.model} if self.model != "minilm" else {}

    @cached_property
    def _vectors(self) -> tuple["Index", list[np.ndarray]]:
        from cascade.models.stored import dense_vectors, ensure_biencoder

        index, name = ensure_biencoder(self.index, self.model, tokens=False, progress=self._progress)
        return index, [dense_vectors(seg, name) for seg in index.segments]

    def score(self, queries: Sequence[Query], docs: list[np.ndarray], k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        from cascade.models.encoders import shared_encoder

        index, parts = self._vectors
        qvecs = shared_encoder(self.model).encode([q.text for q in queries]).dense
        out = []
        for q, nums in zip(qvecs, docs):
            segs = np.searchsorted(index.bases, nums, side="right") - 1
            rows = np.empty((len(nums), qvecs.shape[1]), dtype=np.float32)
            for s in np.unique(segs):
                mask = segs == s
                rows[mask] = parts[s][nums[mask] - index.bases[s]]
            out.append((np.arange(len(nums)), rows @ q))
        return out
