"""Maximal marginal relevance: pick passages that are relevant and unlike those already picked.

Carbonell & Goldstein, "The Use of MMR, Diversity-Based Reranking for Reordering Documents and
Producing Summaries" (SIGIR 1998): each step picks the candidate maximising
``lam * relevance - (1 - lam) * max similarity to the picked ones``. Used here to choose an
LLM's context, as the seed "Re-ranking the Context for Multimodal Retrieval Augmented
Generation" (Mortaheb et al., 2025) asks of context selection: leave out what does not add to
the answer, here the near-duplicates of passages already in. Relevance is the input score
scaled to [0, 1] over the query's candidates; similarity is the cosine of stored dense vectors
when the index has a bi-encoder representation (``sim=auto`` or ``dense``), else the Jaccard
overlap of index terms (``sim=terms``; :mod:`cascade.context.similarity`).

>>> sim = np.array([[1.0, 0.9, 0.1], [0.9, 1.0, 0.2], [0.1, 0.2, 1.0]])
>>> mmr_select(np.array([1.0, 0.95, 0.5]), sim, k=2, lam=0.5)
[0, 2]
>>> mmr_select(np.array([1.0, 0.95, 0.5]), sim, k=2, lam=1.0)
[0, 1]

In a pipeline: ``cascade.parse("bm25 % 50 >> mmr(k=10, lam=0.7)", index=idx)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cascade.context.base import Choice, Selector, Texts
from cascade.context.similarity import dense_name, dense_rows, dense_similarity, term_similarity
from cascade.core.errors import CascadeError
from cascade.core.nodes import Pipeline
from cascade.core.params import ParamInfo
from cascade.core.registry import Context, register_stage
from cascade.core.types import Query

PARAMS = (
    ParamInfo("k", int, 10, "passages to pick", min=1),
    ParamInfo("lam", float, 0.5, "weight of relevance against redundancy (1: relevance only)", min=0.0, max=1.0),
    ParamInfo("sim", str, "auto", "similarity: dense (stored bi-encoder vectors), terms (Jaccard of index terms), "
              "auto (dense when stored)", choices=("auto", "dense", "terms")),
    ParamInfo("depth", int, 100, "consider each query's top depth candidates (the stage before is cut there)",
              min=1),
    ParamInfo("rep", str, None, "the stored dense representation to use (default: the first the index has)",
              optional=True),
)


def mmr_select(relevance: np.ndarray, similarity: np.ndarray, k: int, lam: float) -> list[int]:
    """Positions picked, in the order MMR picks them (at most ``k``); ``relevance`` [n] and the
    pairwise ``similarity`` [n, n]. Ties go to the better-ranked (lower) position."""
    n = len(relevance)
    picked: list[int] = []
    if n == 0:
        return picked
    closest = np.full(n, -np.inf)  # each candidate's highest similarity to a picked one
    free = np.ones(n, dtype=bool)
    for _ in range(min(k, n)):
        redundancy = np.where(np.isfinite(closest), closest, 0.0)
        value = np.where(free, lam * relevance - (1.0 - lam) * redundancy, -np.inf)
        best = int(np.argmax(value))
        picked.append(best)
        free[best] = False
        closest = np.maximum(closest, similarity[best])
    return picked


def scaled(scores: np.ndarray) -> np.ndarray:
    """Scores mapped to [0, 1] (min-max over the list; all 1 when they are equal)."""
    s = np.asarray(scores, dtype=np.float64)
    span = s.max() - s.min() if len(s) else 0.0
    return (s - s.min()) / span if span > 0 else np.ones(len(s))


class MMR(Selector):
    """Pick ``k`` passages by maximal marginal relevance."""

    name = "mmr"
    params = PARAMS

    def __init__(self, index: Any, **given: Any) -> None:
        super().__init__(index, **given)
        self._dense = None if self.values["sim"] == "terms" else dense_name(index, self.values["rep"])
        if self.values["sim"] == "dense" and self._dense is None:
            raise CascadeError(f"mmr: sim=dense needs stored dense vectors, and {index.path} has none; store them "
                               f"with `cascade encode {index.path} --model minilm`, or use sim=terms")

    @property
    def input_depth(self) -> int:  # type: ignore[override]
        return int(self.values["depth"])

    def similarity(self, nums: np.ndarray, texts: Texts) -> tuple[np.ndarray, str]:
        if self._dense is not None:
            rows = dense_rows(self.index, self._dense, nums)
            if rows is not None:
                return dense_similarity(rows), f"dense:{self._dense}"
            if self.values["sim"] == "dense":
                raise CascadeError(f"mmr: some segment of {self.index.path} lacks the stored vectors of "
                                   f"{self._dense!r}; complete them with `cascade encode {self.index.path}`")
        analyzer = self.index.analyzer
        return term_similarity([set(analyzer.terms(t)) for t in texts]), "terms"

    def choose(self, query: Query, nums: np.ndarray, scores: np.ndarray, texts: Texts) -> Choice:
        k, lam = self.values["k"], self.values["lam"]
        sim, source = self.similarity(nums, texts)
        order = mmr_select(scaled(scores), sim, k, lam)
        cut: dict[int, str] = {}
        for p in range(len(scores)):
            if p in order:
                continue
            worse = [q for q in order if q > p]  # picked though ranked below this one
            j = max(order, key=lambda q: sim[p, q])
            if worse:
                cut[p] = (f"redundant: similarity {float(sim[p, j]):.2f} to rank {j + 1} ({source}); "
                          f"rank {worse[0] + 1} added more")
            else:
                cut[p] = f"not among the {k} picked (closest picked: rank {j + 1}, similarity {float(sim[p, j]):.2f})"
        return Choice(order, cut, {"order": [p + 1 for p in order], "similarity": source, "lam": lam})


def _build(ctx: Context, **params: Any) -> Pipeline:
    return MMR(ctx.index("mmr"), **params)


register_stage("mmr", _build, params=PARAMS,
               help="pick passages by maximal marginal relevance (relevant, and unlike those already picked)")
