"""BM25 first-stage retrieval (Lucene variant), exact (rank-safe) top-k.

Robertson & Zaragoza, "The Probabilistic Relevance Framework: BM25 and Beyond" (2009); the
formula and its defaults live in :mod:`cascade.index.bm25_formula`. N, df and avgdl are
counted over the live documents of all segments of the snapshot searched, so scores do not
depend on how the documents are split into segments, nor on what was added or deleted
before. A filter (``where``) restricts which documents are returned, never the statistics.

One search path serves everything: a single query (:meth:`BM25.search`), a batch
(:meth:`BM25.search_batch`) and a pipeline stage all analyse their queries the same way and
run the same top-k engine (:mod:`cascade.retrieve.impact_search`): the compiled kernels once
they are compiled (numba caches them on disk), else their numpy twin, which gives the same
results. ``engine="kernels"`` or ``"numpy"`` forces one.

>>> import tempfile, cascade
>>> docs = [cascade.Doc("d1", "a cat sat on the mat"), cascade.Doc("d2", "a dog chased the cat"),
...         cascade.Doc("d3", "dogs and dogs")]
>>> index = cascade.Index.build(docs, tempfile.mkdtemp() + "/toy.idx")
>>> [hit.id for hit in BM25(index).search("dog", k=2)]
['d3', 'd2']
"""

from __future__ import annotations

import threading
import time
import weakref
from functools import cached_property
from itertools import repeat
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from cascade.core.candidates import SAMPLED, Candidates
from cascade.core.errors import CascadeError
from cascade.core.nodes import Pipeline, Runner, as_queries, format_call
from cascade.core.params import ParamInfo, check_params, non_defaults
from cascade.core.registry import Context, register_stage
from cascade.core.types import Hit, Query
from cascade.filters import compile_filter
from cascade.index import bm25_formula
from cascade.index.impacts import Impacts
from cascade.index.index import Index
from cascade.index.segment import segment_impacts
from cascade.kernels.query_terms import count_terms
from cascade.retrieve import impact_search
from cascade.text.analyzer import QUERY_BREAK
from cascade.text.marks import NO_TERM, QUERY_END

ENGINES = ("auto", "kernels", "numpy")
LATENCY_SAMPLE = 100  # queries answered one by one after a pipeline batch, for latency percentiles
MEMO_LIMIT = 1_000_000  # raw tokens remembered per snapshot before the memo starts over

PARAMS = (
    ParamInfo("k1", float, bm25_formula.K1, "term-frequency saturation", min=0),
    ParamInfo("b", float, bm25_formula.B, "document-length normalisation", min=0, max=1),
    ParamInfo("k", int, 1000, "results per query", min=1),
    ParamInfo("where", str, None, "only documents matching this filter, e.g. 'year >= 2020'", optional=True),
)


class QueryTerms:
    """Query analysis for one index snapshot, shared by every BM25 stage over it.

    Raw tokens are memoised to *query-term ids* (one per distinct analysed term seen in
    queries; NO_TERM for stopwords, one-character words and terms in no segment), and each id
    to its term number in every segment and its idf, so a warm batch costs one tokenising
    pass, a dictionary lookup per token and a few gathers. Thread-safe (the server searches one
    snapshot from several threads): what grows (new ids, their term numbers and idf) grows under
    a lock; reading what is there takes none."""

    def __init__(self, index: Index) -> None:
        # not the index itself: this object lives in a weak-keyed table whose key is the index
        self.analyzer, self.segments, self.n_docs = index.analyzer, index.segments, index.n_docs
        self.memo: dict[str | bytes, int] = {QUERY_BREAK: QUERY_END}
        self.ids: dict[str, int] = {}  # analysed term -> query-term id
        self.terms: list[str] = []
        self._numbers = [np.zeros(0, np.int64) for _ in self.segments]
        self._idf = np.zeros(0)
        self._first: list[tuple[int, float]] = []  # per query-term id: (segment 0's term number, idf)
        self._lock = threading.RLock()

    @cached_property
    def lookups(self) -> list[dict[str, int]]:
        """Each segment's term dictionary (term -> term number)."""
        return [seg.term_numbers for seg in self.segments]

    def numbers(self, texts: Sequence[str]) -> np.ndarray:
        """Query-term ids of the batch's tokens, QUERY_END between queries. ASCII queries are
        split together by one ``translate`` + ``split``; others (not ASCII, or holding "+" or "#"
        under ``symbol_suffixes``) one by one by :meth:`Analyzer.raw_tokens` (accent folding, CJK
        bigrams), then put in place. Every option gives the regex path's tokens."""
        if len(self.memo) > MEMO_LIMIT:
            self.memo = {QUERY_BREAK: QUERY_END}
        analyzer = self.analyzer
        if len(texts) == 1:  # one query (an interactive search): no joining
            words = analyzer.ascii_words(texts[0])
            return self._token_array(analyzer.raw_tokens(texts[0]) if words is None else words)
        batch = analyzer.ascii_words_batch(texts)
        if batch is None:
            tokens: list[str | bytes] = []
            for i, text in enumerate(texts):
                if i:
                    tokens.append(QUERY_BREAK)
                words = analyzer.ascii_words(text)
                tokens.extend(analyzer.raw_tokens(text) if words is None else words)
            return self._token_array(tokens)
        words, others = batch
        numbers = self._token_array(words)
        if others:  # each one's tokens go where its empty text left them: after the break before it
            starts = np.flatnonzero(numbers == QUERY_END) + 1
            parts = [self._token_array(analyzer.raw_tokens(texts[i])) for i in others]
            at = np.repeat([0 if i == 0 else starts[i - 1] for i in others], [len(p) for p in parts])
            numbers = np.insert(numbers, at, np.concatenate(parts))
        return numbers

    def counted(self, text: str) -> tuple[list[int], list[float]]:
        """One query's distinct query-term ids in first-seen order, and how often each occurs
        (what :func:`~cascade.kernels.query_terms.count_terms` gives for a batch of one)."""
        counts = self.counts(text)
        return list(counts), [float(c) for c in counts.values()]

    def counts(self, text: str) -> dict[int, int]:
        """:meth:`counted` as one dict: query-term id -> occurrences, in first-seen order."""
        analyzer = self.analyzer
        words = analyzer.ascii_words(text)
        get = self.memo.get
        counts: dict[int, int] = {}
        for token in analyzer.raw_tokens(text) if words is None else words:
            number = get(token)
            if number is None:  # learnt in token order, as a batch learns them
                number = self._learn(token)
            if number >= 0:
                counts[number] = counts.get(number, 0) + 1
        return counts

    def first_segment(self) -> list[tuple[int, float]]:
        """Per query-term id, (segment 0's term number, idf) as Python values: what one query on a
        one-segment index reads, one list lookup per term instead of numpy scalars. Covers every
        id made before the call; grows (in place, under the lock) like the arrays it copies."""
        pairs = self._first
        if len(pairs) < len(self.terms):
            with self._lock:
                idf, numbers = self.idf(), self.segment_numbers(0)
                done, n = len(pairs), min(len(idf), len(numbers))
                if done < n:
                    pairs.extend(zip(numbers[done:n].tolist(), idf[done:n].tolist()))
        return pairs

    def _token_array(self, tokens: Sequence[str | bytes]) -> np.ndarray:
        unseen = NO_TERM - 2  # below every value the memo holds
        numbers = list(map(self.memo.get, tokens, repeat(unseen)))
        if unseen in numbers:
            numbers = [self._learn(token) for token in tokens]
        return np.array(numbers, dtype=np.int64)

    def _learn(self, token: str | bytes) -> int:
        """The query-term id of a raw token (str from the regex, or bytes from ``ascii_words``,
        whose one-character words the token pattern would drop), memoised."""
        number = self.memo.get(token)
        if number is None:
            analyzer = self.analyzer
            if isinstance(token, bytes):  # an ASCII word: the default pattern takes two characters or more
                term = analyzer.term_of(token.decode()) if len(token) > 1 else None
            else:
                term = analyzer.term_of(token)
            number = self.memo[token] = NO_TERM if term is None else self.term_id(term)
        return number

    def term_id(self, term: str) -> int:
        """The query-term id of an analysed term (NO_TERM when no segment has it)."""
        found = self.ids.get(term)
        if found is None:
            if not any(term in lookup for lookup in self.lookups):
                return NO_TERM
            with self._lock:
                found = self.ids.get(term)
                if found is None:
                    found = len(self.terms)
                    self.terms.append(term)
                    self.ids[term] = found
        return found

    def segment_numbers(self, s: int) -> np.ndarray:
        """Segment s's term number of every query-term id (-1 where the segment lacks it)."""
        have = self._numbers[s]
        if len(have) < len(self.terms):
            with self._lock:
                have, n = self._numbers[s], len(self.terms)
                lookup = self.lookups[s]
                more = [lookup.get(t, -1) for t in self.terms[len(have):n]]
                have = self._numbers[s] = np.concatenate([have, np.array(more, dtype=np.int64)])
        return have

    def idf(self) -> np.ndarray:
        """idf of every query-term id over the live documents (0 for a term no live document has)."""
        if len(self._idf) < len(self.terms):
            with self._lock:
                done, n = len(self._idf), len(self.terms)
                df = np.zeros(n - done, dtype=np.int64)
                for s, seg in enumerate(self.segments):
                    numbers = self.segment_numbers(s)[done:n]
                    present = numbers >= 0
                    df[present] += seg.live_df[numbers[present]]
                more = np.where(df > 0, bm25_formula.idf(self.n_docs, df), 0.0)
                self._idf = np.concatenate([self._idf, more])
        return self._idf


_QUERY_TERMS: "weakref.WeakKeyDictionary[Index, QueryTerms]" = weakref.WeakKeyDictionary()


def query_terms(index: Index) -> QueryTerms:
    """The query analysis shared by the BM25 stages of ``index`` (one snapshot)."""
    found = _QUERY_TERMS.get(index)
    if found is None:
        found = _QUERY_TERMS[index] = QueryTerms(index)
    return found


class BM25(Pipeline):
    """Exact BM25 top-k over an :class:`~cascade.Index` snapshot; a first-stage pipeline node.

    Args:
        index: the snapshot to search (an opened index never changes: search a newer commit
            with ``BM25(index.refresh())``).
        k1, b: see :mod:`cascade.index.bm25_formula` (its defaults are Anserini's).
        k: results per query when used as a stage.
        where: a filter (string or ``cascade.F`` expression) every search of this retriever
            applies; a ``where`` given to a search is ANDed with it.
        engine: ``auto`` (compiled kernels when numba has them cached or loaded, else numpy),
            ``kernels`` or ``numpy``; all give identical results.
    """

    name = "bm25"
    params = PARAMS
    cacheable = True

    def __init__(self, index: Index, k1: float = bm25_formula.K1, b: float = bm25_formula.B, k: int = 1000,
                 where: Any = None, engine: str = "auto") -> None:
        if not isinstance(index, Index):
            raise CascadeError(f"BM25 searches a cascade.Index (got {type(index).__name__})")
        if engine not in ENGINES:
            raise CascadeError(f"bm25: engine must be one of {', '.join(ENGINES)} (got {engine!r})")
        values = check_params(self.name, PARAMS, {"k1": k1, "b": b, "k": k})
        self.index = index
        self.k1, self.b, self.k = values["k1"], values["b"], values["k"]
        self.filter = compile_filter(where, index.manifest.filter_fields)
        self.where = None if self.filter is None else str(self.filter)
        self.engine = engine

    # -- the stage ------------------------------------------------------------------------

    def key(self) -> tuple[Any, ...]:
        return (self.name, ("k1", self.k1), ("b", self.b), ("k", self.k), ("where", self.where),
                ("index", self.index.version))

    def limit(self, k: int) -> "BM25":
        return BM25(self.index, self.k1, self.b, min(k, self.k), self.filter, self.engine)

    @property
    def space(self) -> Index:
        return self.index

    def settings(self) -> dict[str, Any]:
        return {"k1": self.k1, "b": self.b, "k": self.k, "where": self.where}

    def __str__(self) -> str:
        return format_call(self.name, (), non_defaults(PARAMS, self.settings()))

    def execute(self, runner: Runner, queries: Sequence[Query], candidates: Candidates | None) -> Candidates:
        out = self.search_batch(queries)
        return out.timed(out.seconds[self.name], SAMPLED, self._latency_sample(queries))

    def _latency_sample(self, queries: Sequence[Query]) -> np.ndarray:
        """Seconds for an evenly spread sample of the queries answered one by one: what one user
        waiting on one query sees (the batch answers them faster together)."""
        picked = np.unique(np.linspace(0, len(queries) - 1, min(LATENCY_SAMPLE, len(queries))).astype(int)) \
            if queries else np.zeros(0, int)
        seconds = np.zeros(len(picked))
        for j, i in enumerate(picked.tolist()):
            start = time.perf_counter()
            self._rank([queries[i].text], self.k, None, 1, "ranges")
            seconds[j] = time.perf_counter() - start
        return seconds

    # -- searching ------------------------------------------------------------------------

    @property
    def compiled(self) -> bool:
        """Whether searches run the compiled kernels (else their numpy twin)."""
        if self.engine == "auto":
            return impact_search.kernels_ready()
        return self.engine == "kernels"

    def search(self, query: str, k: int = 10, where: Any = None) -> list[Hit]:
        """Top ``k`` hits for one query string, with stored titles and texts; ``where``: only
        documents matching this filter (see :mod:`cascade.filters`)."""
        if not isinstance(query, str):
            raise CascadeError(f"search takes one query string (got {type(query).__name__}); "
                               "search_batch takes several")
        offsets, nums, scores = self.rank([query], k, where=where)
        return [Hit(i, s, rank, title, text, meta)
                for rank, ((i, title, text, meta), s) in enumerate(zip(self.index.doc_fields(nums), scores.tolist()), 1)]

    def search_batch(self, queries: Sequence[Query | str], k: int | None = None, *, where: Any = None,
                     threads: int = 1, mode: str = "ranges", exhaustive: bool = False,
                     progress: Callable[[int], None] | None = None) -> Candidates:
        """Top ``k`` (default: the stage's) for every query in one call: Query objects or plain
        strings (numbered "0", "1", ...). ``threads`` > 1 answers one query per thread;
        ``mode``: "ranges" (default, the fastest measured), "maxscore" or "exhaustive" (scores
        every posting: the check path); all return identical results."""
        qs = as_queries(queries)
        k = self.k if k is None else k
        self.prepare()  # first-use work (impacts for these settings, loading kernels) is not query time
        start = time.perf_counter()
        offsets, docs, scores = self.rank([q.text for q in qs], k, where=where, threads=threads,
                                          mode="exhaustive" if exhaustive else mode)
        elapsed = time.perf_counter() - start
        if progress is not None:
            progress(len(qs))
        cands = Candidates([q.id for q in qs], offsets, docs, scores, self.index)
        cands.seconds[self.name] = elapsed
        return cands

    def rank(self, texts: Sequence[str], k: int, *, where: Any = None, threads: int = 1,
             mode: str = "ranges") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top ``k`` global doc numbers and scores for query texts, ragged: (offsets, docs, scores)."""
        return self._rank(texts, k, where, threads, mode)

    def _rank(self, texts: Sequence[str], k: int, where: Any, threads: int,
              mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        terms = self.query_terms()
        compiled = self.compiled
        if len(texts) == 1 and len(self.index.segments) == 1:
            return self._rank_one(terms, texts[0], k, where, threads, mode, compiled)
        if len(texts) == 1:  # one query: its few terms counted in Python, no compiled call for that
            ids, repeats = terms.counted(texts[0])
            qterms, counts = np.array(ids, dtype=np.int64), np.array(repeats, dtype=np.float64)
            qoffsets = np.array([0, len(qterms)], dtype=np.int64)
        else:
            qoffsets, qterms, counts = count_terms(terms.numbers(texts), len(texts), compiled=compiled)
        return self._run(qoffsets, qterms, counts * terms.idf()[qterms], k, where, threads, mode, compiled)

    def rank_weighted(self, queries: Sequence[Mapping[str, float]], k: int, *, where: Any = None,
                      threads: int = 1, mode: str = "ranges") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top ``k`` for queries given as analysed terms -> boost (each scored boost x idf), e.g.
        an expanded query: ragged (offsets, doc numbers, scores)."""
        terms = self.query_terms()
        flat_terms: list[int] = []
        boosts: list[float] = []
        offsets = np.zeros(len(queries) + 1, dtype=np.int64)
        for q, query in enumerate(queries):
            for term, boost in query.items():
                number = terms.term_id(term)
                if number >= 0:
                    flat_terms.append(number)
                    boosts.append(boost)
            offsets[q + 1] = len(flat_terms)
        qterms = np.array(flat_terms, dtype=np.int64)
        weights = np.array(boosts, dtype=np.float64) * terms.idf()[qterms]
        return self._run(offsets, qterms, weights, k, where, threads, mode, self.compiled)

    def _rank_one(self, terms: QueryTerms, text: str, k: int, where: Any, threads: int, mode: str,
                  compiled: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`_run` for one query on a one-segment index, its few terms handled in Python:
        the same weights (count x idf in float64) in the same order, so the same results."""
        counts = terms.counts(text)
        pairs = terms.first_segment()
        numbers: list[int] = []
        weights: list[float] = []
        for t, c in counts.items():
            number, idf = pairs[t]
            if idf != 0:  # a term no live document has scores nothing
                numbers.append(number)
                weights.append(c * idf)  # int x float: the float64 product count x idf
        query = impact_search.SegmentQueries(impact_search.one_query_offsets(len(numbers)),
                                             np.array(numbers, dtype=np.int64), np.array(weights, dtype=np.float64),
                                             self.allowed(where)[0])
        self._check(k, mode)
        if compiled:
            impact_search.warm_up()
            return impact_search.search_one(self.postings[0], query, k, mode=impact_search.MODES[mode])
        return impact_search.search(self.postings, self.index.bases, [query], k, n_queries=1, compiled=compiled,
                                    mode=impact_search.MODES[mode], threads=threads)

    @staticmethod
    def _check(k: int, mode: str) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise CascadeError(f"k must be at least 1 (got {k!r})")
        if mode not in impact_search.MODES:
            raise CascadeError(f"unknown mode {mode!r}; choose from {', '.join(impact_search.MODES)}")

    def _run(self, offsets: np.ndarray, qterms: np.ndarray, weights: np.ndarray, k: int, where: Any, threads: int,
             mode: str, compiled: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self._check(k, mode)
        if compiled:
            impact_search.warm_up()
        terms = self.query_terms()
        masks = self.allowed(where)
        parts = []
        for s in range(len(self.index.segments)):
            numbers = terms.segment_numbers(s)[qterms]
            # terms this segment lacks, and terms no live document has (idf 0), score nothing
            keep = (numbers >= 0) & (weights != 0)
            if keep.all():
                parts.append(impact_search.SegmentQueries(offsets, numbers, weights, masks[s]))
            else:
                kept = np.zeros(len(keep) + 1, dtype=np.int64)
                np.cumsum(keep, out=kept[1:])
                parts.append(impact_search.SegmentQueries(kept[offsets], numbers[keep], weights[keep], masks[s]))
        return impact_search.search(self.postings, self.index.bases, parts, k, n_queries=len(offsets) - 1,
                                    compiled=compiled, mode=impact_search.MODES[mode], threads=threads)

    # -- statistics -----------------------------------------------------------------------

    def query_terms(self) -> QueryTerms:
        """The query analysis (term ids, idf) this retriever scores with: the snapshot's own; a
        shard of a sharded index swaps in the collection's statistics (cascade.scale)."""
        return query_terms(self.index)

    def avg_doc_length(self) -> float:
        """avgdl of the impacts: the snapshot's live documents (a shard: the whole collection's)."""
        return self.index.avg_doc_length

    def prepare(self) -> None:
        """Do the first-use work now: impacts for these settings, the term dictionaries, the
        compiled kernels."""
        self.postings  # noqa: B018
        self.query_terms().lookups  # noqa: B018
        if self.compiled:
            impact_search.warm_up()
            count_terms(np.zeros(0, np.int64), 1, compiled=True)  # loads the batch term counter

    @cached_property
    def postings(self) -> list[impact_search.Postings]:
        """What the engine reads of each segment: its postings with these settings' impacts."""
        return [impact_search.Postings(seg.indptr, seg.docs, imp, seg.n_docs)
                for seg, imp in zip(self.index.segments, self.impacts)]

    @cached_property
    def impacts(self) -> list[Impacts]:
        """Per-segment impacts for these k1, b and the live documents' average length (the
        stored ones where they match, else computed once per segment and shared)."""
        avgdl = self.avg_doc_length()
        return [segment_impacts(seg, self.k1, self.b, avgdl, compiled=self.compiled) for seg in self.index.segments]

    def allowed(self, where: Any = None) -> list[np.ndarray | None]:
        """Per-segment allowed-docs masks: live, matching this retriever's filter and ``where``."""
        if where is None:
            return self._default_masks
        extra = compile_filter(where, self.index.manifest.filter_fields)
        return self.index.allowed_docs(extra if self.filter is None else self.filter & extra)

    @cached_property
    def _default_masks(self) -> list[np.ndarray | None]:
        return self.index.allowed_docs(self.filter)

    def query_weights(self, text: str) -> dict[str, float]:
        """Analysed query terms present in the index -> qtf x idf (what a query scores with)."""
        terms = self.query_terms()
        offsets, qterms, counts = count_terms(terms.numbers([text]), 1, compiled=False)
        idf = terms.idf()
        return {terms.terms[t]: float(c * idf[t]) for t, c in zip(qterms.tolist(), counts.tolist()) if idf[t] > 0}


def _build(ctx: Context, **params: Any) -> Pipeline:
    return BM25(ctx.index("bm25"), **params)


register_stage("bm25", _build, params=PARAMS, help="BM25 over the index's postings (Lucene's variant, exact top k)")
