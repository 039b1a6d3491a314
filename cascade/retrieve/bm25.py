"""BM25 first-stage retrieval (Lucene variant), exact top-k.

Robertson & Zaragoza, "The Probabilistic Relevance Framework: BM25 and Beyond" (2009);
the idf and length normalisation follow Lucene's BM25Similarity, as Anserini uses it:

    score(q, d) = sum over terms t of q:  qtf(t) * idf(t) * tf / (tf + k1 * (1 - b + b * dl / avgdl))
    idf(t)      = ln(1 + (N - df + 0.5) / (df + 0.5))

N, df and avgdl are summed over all segments of the index, so scores do not depend on how
the documents are split into segments.

>>> import tempfile, cascade
>>> docs = [cascade.Doc("d1", "a cat sat on the mat"), cascade.Doc("d2", "a dog chased the cat"),
...         cascade.Doc("d3", "dogs and dogs")]
>>> index = cascade.Index.build(docs, tempfile.mkdtemp() + "/toy.idx")
>>> [hit.id for hit in index.bm25().search("dog", k=2)]
['d3', 'd2']
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Sequence

import numpy as np

from cascade.data.types import Query
from cascade.errors import CascadeError
from cascade.index.index import Index
from cascade.index.segment import Segment
from cascade.pipeline.base import Pipeline, format_call
from cascade.pipeline.candidates import Candidates

# -- kernels ------------------------------------------------------------------------------


def bm25_idf(n_docs: int, df: np.ndarray | int) -> np.ndarray:
    """Lucene's BM25 idf: ln(1 + (N - df + 0.5) / (df + 0.5))."""
    df = np.asarray(df, dtype=np.float64)
    return np.log1p((n_docs - df + 0.5) / (df + 0.5))


def accumulate_term(acc: np.ndarray, docs: np.ndarray, tfs: np.ndarray, doc_norm: np.ndarray,
                    weight: float) -> None:
    """Term-at-a-time: add one term's BM25 contribution to the score accumulator."""
    tf = tfs.astype(np.float32)
    acc[docs] += np.float32(weight) * tf / (tf + doc_norm[docs])


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k highest positive scores, best first, ties by index."""
    nonzero = np.flatnonzero(scores > 0)
    if len(nonzero) > k:
        kth = np.partition(scores[nonzero], len(nonzero) - k)[len(nonzero) - k]
        nonzero = nonzero[scores[nonzero] >= kth]
    order = np.lexsort((nonzero, -scores[nonzero]))[:k]
    chosen = nonzero[order]
    return chosen, scores[chosen]


# -- public API ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result."""

    id: str
    score: float
    title: str
    text: str
    num: int


class BM25(Pipeline):
    """Exact BM25 top-k over an :class:`~cascade.Index`; a first-stage pipeline node.

    Args:
        index: the index to search.
        k1: term-frequency saturation (Lucene / Anserini default 0.9).
        b: length normalisation (Anserini default 0.4).
        k: how many results per query when used as a stage.
    """

    name = "bm25"
    cacheable = True

    def __init__(self, index: Index, k1: float = 0.9, b: float = 0.4, k: int = 1000) -> None:
        if k1 < 0 or not 0 <= b <= 1:
            raise CascadeError(f"BM25 needs k1 >= 0 and 0 <= b <= 1 (got k1={k1}, b={b})")
        if k < 1:
            raise CascadeError(f"k must be at least 1 (got {k})")
        self.index, self.k1, self.b, self.k = index, float(k1), float(b), int(k)

    def key(self) -> tuple:
        return (self.name, ("k1", self.k1), ("b", self.b), ("k", self.k), ("index", self.index.version))

    @property
    def depth(self) -> int:  # type: ignore[override]
        return self.k

    def with_depth(self, k: int) -> "BM25":
        return type(self)(self.index, self.k1, self.b, k)

    @property
    def space(self) -> Index:
        return self.index

    def params(self) -> dict[str, float | int]:
        """Settings that differ from the defaults (what ``str()`` prints)."""
        defaults = {"k1": 0.9, "b": 0.4, "k": 1000}
        current = {"k1": self.k1, "b": self.b, "k": self.k}
        return {name: v for name, v in current.items() if v != defaults[name]}

    def __str__(self) -> str:
        return format_call(self.name, (), self.params())

    @cached_property
    def _doc_norms(self) -> list[np.ndarray]:
        avgdl = self.index.avg_doc_length or 1.0
        return [
            (self.k1 * (1 - self.b + self.b * seg.doclens.astype(np.float32) / avgdl)).astype(np.float32)
            for seg in self.index.segments
        ]

    def query_weights(self, text: str) -> dict[str, float]:
        """Analysed query terms present in the index -> qtf * idf."""
        return self.term_weights(Counter(self.index.analyzer.terms(text)))

    def term_weights(self, boosts: dict[str, float]) -> dict[str, float]:
        """Index terms with a query weight (boost) -> boost * idf; absent terms dropped."""
        dfs = {t: self.index.df(t) for t in boosts}
        n = self.index.n_docs
        return {t: w * float(bm25_idf(n, dfs[t])) for t, w in boosts.items() if dfs[t] > 0}

    def _score_segment(self, seg: Segment, doc_norm: np.ndarray, weights: dict[str, float]) -> np.ndarray:
        acc = np.zeros(seg.n_docs, dtype=np.float32)
        for term, weight in weights.items():
            postings = seg.postings(term)
            if postings is not None:
                accumulate_term(acc, postings[0], postings[1], doc_norm, weight)
        return acc

    def rank(self, text: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Global doc numbers and scores of the top ``k`` documents for ``text``."""
        return self.rank_weighted(self.query_weights(text), k)

    def rank_weighted(self, weights: dict[str, float], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` for a query given as index terms -> weight (boost * idf)."""
        if k < 1:
            raise CascadeError(f"k must be at least 1 (got {k})")
        if not weights:
            return np.empty(0, np.int32), np.empty(0, np.float32)
        nums, scores = [], []
        for base, seg, norm in zip(self.index.bases, self.index.segments, self._doc_norms):
            local, s = top_k(self._score_segment(seg, norm, weights), k)
            nums.append(local + base)
            scores.append(s)
        if len(nums) == 1:
            return nums[0].astype(np.int32), scores[0]
        all_scores = np.concatenate(scores)
        all_nums = np.concatenate(nums)
        pick, _ = top_k(np.where(all_scores > 0, all_scores, 0), k)
        order = np.lexsort((all_nums[pick], -all_scores[pick]))
        return all_nums[pick][order].astype(np.int32), all_scores[pick][order]

    def search(self, query: str, k: int = 10) -> list[Hit]:
        """Top ``k`` hits for one query string, with stored titles and texts."""
        nums, scores = self.rank(query, k)
        docs = self.index.docs(nums)
        return [Hit(d.id, float(s), d.title, d.text, int(n)) for d, s, n in zip(docs, scores, nums)]

    def search_batch(self, queries: Sequence[Query], k: int | None = None,
                     progress: Callable[[int], None] | None = None) -> Candidates:
        """Top ``k`` for every query; ``progress(n_done)`` is called as queries finish."""
        k = self.k if k is None else k
        docs, scores = [], []
        seconds = np.zeros(len(queries))
        for i, q in enumerate(queries):
            start = time.perf_counter()
            d, s = self.rank(q.text, k)
            seconds[i] = time.perf_counter() - start
            docs.append(d)
            scores.append(s)
            if progress is not None:
                progress(i + 1)
        cands = Candidates.from_lists([q.id for q in queries], docs, scores, self.index)
        cands.seconds[self.name] = float(seconds.sum())
        cands.query_seconds = seconds
        return cands

    def execute(self, executor: object, queries: Sequence[Query], candidates: Candidates | None) -> Candidates:
        return self.search_batch(queries)

