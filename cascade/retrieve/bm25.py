"""BM25 first-stage retrieval (Lucene variant), exact (rank-safe) top-k.

Robertson & Zaragoza, "The Probabilistic Relevance Framework: BM25 and Beyond" (2009);
the idf and length normalisation follow Lucene's BM25Similarity, as Anserini uses it:

    score(q, d) = sum over terms t of q:  qtf(t) * idf(t) * tf / (tf + k1 * (1 - b + b * dl / avgdl))
    idf(t)      = ln(1 + (N - df + 0.5) / (df + 0.5))

N, df and avgdl are counted over the live documents of all segments, so scores do not
depend on how the documents are split into segments, nor on what was added or deleted
before: after any sequence of updates they equal a fresh build of the same documents.
A filter (``where``) restricts which documents are returned, never the statistics.

>>> import tempfile, cascade
>>> docs = [cascade.Doc("d1", "a cat sat on the mat"), cascade.Doc("d2", "a dog chased the cat"),
...         cascade.Doc("d3", "dogs and dogs")]
>>> index = cascade.Index.build(docs, tempfile.mkdtemp() + "/toy.idx")
>>> [hit.id for hit in index.bm25().search("dog", k=2)]
['d3', 'd2']
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from itertools import repeat
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from cascade.data.types import Query
from cascade.errors import CascadeError
from cascade.index.impacts import Impacts
from cascade.index.index import Index
from cascade.index.segment import segment_impacts
from cascade.retrieve import impact_search
from cascade.pipeline.base import Pipeline, format_call
from cascade.pipeline.candidates import Candidates
from cascade.text.analyzer import QUERY_BREAK
from cascade.text.marks import NO_TERM, QUERY_END

if TYPE_CHECKING:
    from cascade.filters.expr import Expr


# -- kernels ------------------------------------------------------------------------------
# Top-k runs in the impact engine (cascade/retrieve/impact_search.py, kernels in
# maxscore.py: document-range TAAT, block-max MaxScore, exhaustive); BM25 contributes its
# term weights (qtf x idf) and its impacts (the tf part).


def bm25_idf(n_docs: int, df: np.ndarray | int) -> np.ndarray:
    """Lucene's BM25 idf: ln(1 + (N - df + 0.5) / (df + 0.5))."""
    df = np.asarray(df, dtype=np.float64)
    return np.log1p((n_docs - df + 0.5) / (df + 0.5))


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
        where: a filter (string or ``cascade.F`` expression) every search of this retriever
            applies; a ``where`` given to a search is ANDed with it.
    """

    name = "bm25"
    cacheable = True

    def __init__(self, index: Index, k1: float = 0.9, b: float = 0.4, k: int = 1000,
                 where: "str | Expr | None" = None) -> None:
        from cascade.filters import compile_filter

        if isinstance(k1, bool) or isinstance(b, bool) or isinstance(k, bool):
            raise CascadeError("BM25 k1, b and k are numbers")
        if k1 < 0 or not 0 <= b <= 1:
            raise CascadeError(f"BM25 needs k1 >= 0 and 0 <= b <= 1 (got k1={k1}, b={b})")
        if k < 1:
            raise CascadeError(f"k must be at least 1 (got {k})")
        self.index, self.k1, self.b, self.k = index, float(k1), float(b), int(k)
        self.filter = compile_filter(where, index.manifest.filter_fields)
        self.where = None if self.filter is None else str(self.filter)
        self._seen_version = index.version

    def key(self) -> tuple:
        return (self.name, ("k1", self.k1), ("b", self.b), ("k", self.k), ("where", self.where),
                ("index", self.index.version))

    def _sync(self) -> None:
        """Drop statistics cached for an earlier snapshot of the index (after ``refresh()``)."""
        if self.index.version != self._seen_version:
            for name in ("impacts", "_idf", "_segment_idf", "_default_masks", "_token_numbers"):
                self.__dict__.pop(name, None)
            self._seen_version = self.index.version

    def allowed(self, where: "str | Expr | None" = None) -> list[np.ndarray | None]:
        """Per-segment allowed-docs masks: live, matching this retriever's filter and ``where``."""
        self._sync()
        if where is None:
            return self._default_masks
        from cascade.filters import compile_filter

        extra = compile_filter(where, self.index.manifest.filter_fields)
        return self.index.allowed_docs(extra if self.filter is None else self.filter & extra)

    @cached_property
    def _default_masks(self) -> list[np.ndarray | None]:
        return self.index.allowed_docs(self.filter)

    @property
    def depth(self) -> int:  # type: ignore[override]
        return self.k

    def with_depth(self, k: int) -> "BM25":
        return type(self)(self.index, self.k1, self.b, k, where=self.filter)

    @property
    def space(self) -> Index:
        return self.index

    def params(self) -> dict[str, float | int | str | None]:
        """Settings that differ from the defaults (what ``str()`` prints)."""
        defaults = {"k1": 0.9, "b": 0.4, "k": 1000, "where": None}
        current = {"k1": self.k1, "b": self.b, "k": self.k, "where": self.where}
        return {name: v for name, v in current.items() if v != defaults[name]}

    def __str__(self) -> str:
        return format_call(self.name, (), self.params())

    @cached_property
    def impacts(self) -> list[Impacts]:
        """Per-segment impacts for these k1, b and the live documents' average length."""
        avgdl = self.index.avg_doc_length
        return [segment_impacts(seg, self.k1, self.b, avgdl) for seg in self.index.segments]

    def query_weights(self, text: str) -> dict[str, float]:
        """Analysed query terms present in the index -> qtf * idf."""
        self._sync()
        return self.term_weights(Counter(self.index.analyzer.terms(text)))

    def term_weights(self, boosts: dict[str, float]) -> dict[str, float]:
        """Index terms with a query weight (boost) -> boost * idf; absent terms dropped."""
        idf = self._idf
        out = {}
        for term, boost in boosts.items():
            value = idf.get(term)
            if value is None:
                df = self.index.df(term)
                n = self.index.n_docs
                value = idf[term] = math.log1p((n - df + 0.5) / (df + 0.5)) if df > 0 else 0.0
            if value > 0.0:
                out[term] = boost * value
        return out

    @cached_property
    def _idf(self) -> dict[str, float]:
        return {}

    def rank(self, text: str, k: int, where: "str | Expr | None" = None) -> tuple[np.ndarray, np.ndarray]:
        """Global doc numbers and scores of the top ``k`` documents for ``text``."""
        return self.rank_weighted(self.query_weights(text), k, where=where)

    def rank_weighted(self, weights: dict[str, float], k: int, exhaustive: bool = False,
                      where: "str | Expr | None" = None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` for a query given as index terms -> weight (boost * idf)."""
        offsets, docs, scores = self.rank_many([weights], k, exhaustive=exhaustive, where=where)
        return docs, scores

    def rank_many(self, queries: Sequence[dict[str, float]], k: int, *, exhaustive: bool = False,
                  threads: int = 1, mode: str = "ranges",
                  where: "str | Expr | None" = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top ``k`` for weighted queries as ragged (offsets, doc numbers, scores).

        ``mode``: "ranges" (document-range TAAT with block-max range skipping; the fastest
        measured, default), "maxscore" (block-max MaxScore) or "exhaustive" (scores every
        posting; the check path). All three return identical results.
        """
        if k < 1:
            raise CascadeError(f"k must be at least 1 (got {k})")
        if mode not in impact_search.MODES:
            raise CascadeError(f"unknown mode {mode!r}; choose from {', '.join(impact_search.MODES)}")
        code = impact_search.EXHAUSTIVE if exhaustive else impact_search.MODES[mode]
        masks = self.allowed(where)
        impact_search.warm_up()
        return impact_search.search(self.index.segments, self.impacts, self.index.bases, queries, k,
                                    mode=code, threads=threads, allowed=masks)

    @cached_property
    def _segment_idf(self) -> np.ndarray:
        """idf of every term of a single-segment index, by term number (live documents)."""
        return bm25_idf(self.index.n_docs, self.index.segments[0].live_df)

    def _search_one_segment(self, texts: Sequence[str], k: int, threads: int, mode: str,
                            where: "str | Expr | None" = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The batch path for the common single-segment index: no per-query dicts of weights."""
        if mode not in impact_search.MODES:
            raise CascadeError(f"unknown mode {mode!r}; choose from {', '.join(impact_search.MODES)}")
        [mask] = self.allowed(where)
        impact_search.warm_up()
        seg = self.index.segments[0]
        offsets, terms, counts = self._numbered_queries(texts, seg.term_numbers)
        weights = counts * self._segment_idf[terms]
        # terms whose live df is 0 (all their documents deleted) score nothing, as in rank_many
        keep_terms = weights > 0
        if not keep_terms.all():
            terms, weights = terms[keep_terms], weights[keep_terms]
            offsets = np.concatenate([[0], np.cumsum(keep_terms)]).astype(np.int64)[offsets]
        docs, scores, found = impact_search.search_segment(seg.indptr, seg.docs, self.impacts[0], offsets, terms,
                                                           weights, k, seg.n_docs, mode=impact_search.MODES[mode],
                                                           threads=threads, allowed=mask)
        keep = np.arange(docs.shape[1]) < found[:, None]
        out_offsets = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum(found, out=out_offsets[1:])
        return out_offsets, docs[keep], scores[keep]

    def _numbered_queries(self, texts: Sequence[str], lookup: dict[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each query's distinct term numbers (first-seen order) and their counts, flat and split by
        offsets. Raw tokens are memoised to term numbers (NO_TERM: stopword, or not in the index),
        so a warm batch costs one tokenising pass and a dictionary lookup per token. ASCII queries
        are split together; any others, one by one with the token pattern, then put in place."""
        from cascade.kernels.query_terms import count_terms  # numba: loaded only for batches

        memo = self._token_numbers
        if len(memo) > 1_000_000:
            memo.clear()
        memo[QUERY_BREAK] = QUERY_END
        analyzer = self.index.analyzer
        batch = analyzer.ascii_words_batch(texts)
        if batch is None:
            tokens: list[str | bytes] = []
            for i, text in enumerate(texts):
                if i:
                    tokens.append(QUERY_BREAK)
                words = analyzer.ascii_words(text)
                tokens.extend(analyzer.raw_tokens(text) if words is None else words)
            return count_terms(self._token_array(tokens, lookup), len(texts))
        words, others = batch
        numbers = self._token_array(words, lookup)
        if others:  # each one's tokens go where its empty text left them: after the break before it
            starts = np.flatnonzero(numbers == QUERY_END) + 1
            parts = [self._token_array(analyzer.raw_tokens(texts[i]), lookup) for i in others]
            at = np.repeat([0 if i == 0 else starts[i - 1] for i in others], [len(p) for p in parts])
            numbers = np.insert(numbers, at, np.concatenate(parts))
        return count_terms(numbers, len(texts))

    def _token_array(self, tokens: Sequence[str | bytes], lookup: dict[str, int]) -> np.ndarray:
        """The memoised term numbers of raw tokens, learning the ones not seen before."""
        unseen = NO_TERM - 2  # below every number the memo holds
        numbers = np.fromiter(map(self._token_numbers.get, tokens, repeat(unseen)), dtype=np.int64,
                              count=len(tokens))
        if len(numbers) and numbers.min() == unseen:
            numbers = np.fromiter((self._learn_token(token, lookup) for token in tokens), dtype=np.int64,
                                  count=len(tokens))
        return numbers

    def _learn_token(self, token: str | bytes, lookup: dict[str, int]) -> int:
        """The term number of a raw token (str from the regex, or bytes from ``ascii_words``,
        whose one-character words the token pattern would drop), memoised."""
        number = self._token_numbers.get(token)
        if number is None:
            if isinstance(token, bytes):  # an ASCII word: the default pattern takes two characters or more
                term = self.index.analyzer.term_of(token.decode()) if len(token) > 1 else None
            else:
                term = self.index.analyzer.term_of(token)
            number = self._token_numbers[token] = NO_TERM if term is None else lookup.get(term, NO_TERM)
        return number

    @cached_property
    def _token_numbers(self) -> dict[str | bytes, int]:
        return {}

    def rank_one(self, text: str, k: int, where: "str | Expr | None" = None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` for one query in plain numpy: no compiled kernels to load, so an
        interactive search answers at once. Bit-identical to the kernels: the same float64
        sums, in the same query-term order, rounded to float32, ordered score desc, doc asc."""
        if k < 1:
            raise CascadeError(f"k must be at least 1 (got {k})")
        weights = self.query_weights(text)
        masks = self.allowed(where)
        nums, scores = [np.empty(0, np.int64)], [np.empty(0, np.float32)]
        for base, seg, imp, mask in zip(self.index.bases, self.index.segments, self.impacts, masks):
            acc = np.zeros(seg.n_docs)
            lookup = seg.term_numbers
            for term, weight in weights.items():
                t = lookup.get(term)
                if t is not None:
                    start, end = seg.indptr[t], seg.indptr[t + 1]
                    acc[seg.docs[start:end]] += weight * imp.values[start:end].astype(np.float64)
            found = np.flatnonzero(acc > 0) if mask is None else np.flatnonzero((acc > 0) & mask)
            nums.append(found.astype(np.int64) + base)
            scores.append(acc[found].astype(np.float32))
        all_nums, all_scores = np.concatenate(nums), np.concatenate(scores)
        order = np.lexsort((all_nums, -all_scores))[:k]
        return all_nums[order].astype(np.int32), all_scores[order]

    def search(self, query: str, k: int = 10, where: "str | Expr | None" = None) -> list[Hit]:
        """Top ``k`` hits for one query string, with stored titles and texts; ``where``: only
        documents matching this filter (see :mod:`cascade.filters`)."""
        nums, scores = self.rank_one(query, k, where=where)
        docs = self.index.docs(nums)
        return [Hit(d.id, float(s), d.title, d.text, int(n)) for d, s, n in zip(docs, scores, nums)]

    def search_batch(self, queries: Sequence[Query], k: int | None = None,
                     progress: Callable[[int], None] | None = None, threads: int = 1,
                     exhaustive: bool = False, per_query_timing: bool = False,
                     mode: str = "ranges", where: "str | Expr | None" = None) -> Candidates:
        """Top ``k`` for every query in one compiled call (``threads`` > 1: one query per thread).

        With ``per_query_timing`` each query is answered and timed on its own (what one user
        waiting on one query sees; used for latency percentiles); otherwise per-query latency
        is the batch time shared out. ``exhaustive=True`` scores every posting (the check path
        for pruning; same results, slower). ``progress(n_done)`` is called as queries finish.
        """
        k = self.k if k is None else k
        if k < 1:
            raise CascadeError(f"k must be at least 1 (got {k})")
        seconds = np.zeros(len(queries))
        if per_query_timing:
            parts = []
            for i, q in enumerate(queries):
                start = time.perf_counter()
                parts.append(self.rank_many([self.query_weights(q.text)], k, exhaustive=exhaustive, mode=mode,
                                            where=where))
                seconds[i] = time.perf_counter() - start
                if progress is not None:
                    progress(i + 1)
            docs = [d for _, d, _ in parts]
            scores = [s for _, _, s in parts]
            cands = Candidates.from_lists([q.id for q in queries], docs, scores, self.index)
        else:
            start = time.perf_counter()
            if len(self.index.segments) == 1 and not exhaustive:
                offsets, docs_, scores_ = self._search_one_segment([q.text for q in queries], k, threads, mode,
                                                                   where)
            else:
                offsets, docs_, scores_ = self.rank_many([self.query_weights(q.text) for q in queries], k,
                                                         exhaustive=exhaustive, threads=threads, mode=mode,
                                                         where=where)
            seconds[:] = (time.perf_counter() - start) / max(len(queries), 1)
            cands = Candidates([q.id for q in queries], offsets, docs_, scores_, self.index)
            if progress is not None:
                progress(len(queries))
        cands.seconds[self.name] = float(seconds.sum())
        cands.query_seconds = seconds
        return cands

    def execute(self, executor: object, queries: Sequence[Query], candidates: Candidates | None) -> Candidates:
        return self.search_batch(queries, per_query_timing=True)

