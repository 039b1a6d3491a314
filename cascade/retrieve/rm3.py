"""RM3 pseudo-relevance feedback for BM25.

Lavrenko & Croft, "Relevance-Based Language Models" (SIGIR 2001); RM3 as in Abdul-Jaleel
et al., "UMass at TREC 2004" and Anserini's Rm3Reranker: the top ``fb_docs`` documents of the
incoming candidates form a relevance model: each document's term vector (ignoring terms in
more than ``max_df`` of all documents, shorter than 2 or longer than 20 characters, or not
alphanumeric) is cut to its ``fb_terms`` most frequent terms, L1-normalised and weighted by
the document's score; the summed model's ``fb_terms`` heaviest terms are L1-normalised and
interpolated with the L1-normalised original query,
``orig_weight`` on the original. The expanded, weighted query is run with BM25.

>>> import tempfile, cascade
>>> docs = [cascade.Doc(str(i), t) for i, t in enumerate(
...     ["apple pie recipe", "apple orchard harvest", "pie crust butter", "car engine oil"])]
>>> index = cascade.Index.build(docs, tempfile.mkdtemp() + "/i")
>>> p = cascade.parse("bm25 >> rm3(fb_docs=2, fb_terms=5)", index=index)
>>> str(p.compile())
'bm25(k=2) >> rm3(fb_docs=2, fb_terms=5)'
"""

from __future__ import annotations

import re
import time
from collections import Counter
from typing import Any, Sequence

import numpy as np

from cascade.core.candidates import PER_QUERY, Candidates
from cascade.core.errors import CascadeError
from cascade.core.nodes import Pipeline, Runner, format_call
from cascade.core.params import ParamInfo, check_params, non_defaults
from cascade.core.registry import Context, register_stage
from cascade.core.types import Query
from cascade.index.index import Index
from cascade.index.segment import doc_text
from cascade.retrieve.bm25 import BM25
from cascade.retrieve.bm25 import PARAMS as BM25_PARAMS

_ALNUM = re.compile(r"[a-z0-9]+")
_BM25 = {p.name: p for p in BM25_PARAMS}
PARAMS = (
    ParamInfo("fb_docs", int, 10, "feedback documents: the top of the incoming candidates", min=1),
    ParamInfo("fb_terms", int, 10, "expansion terms kept", min=1),
    ParamInfo("orig_weight", float, 0.5, "weight of the original query against the expansion", min=0, max=1),
    ParamInfo("max_df", float, 0.1, "skip terms in more than this share of all documents", min=1e-9, max=1),
    _BM25["k"], _BM25["k1"], _BM25["b"],
)


class RM3(Pipeline):
    """Query expansion from the incoming candidates, then BM25 retrieval of ``k`` documents."""

    name = "rm3"
    params = PARAMS
    cacheable = True

    def __init__(self, index: Index, **settings: Any) -> None:
        self.index = index
        self.settings = check_params(self.name, PARAMS, settings)
        self.bm25 = BM25(index, k1=self.settings["k1"], b=self.settings["b"], k=self.settings["k"])

    def key(self) -> tuple[Any, ...]:
        return (self.name, tuple(sorted(self.settings.items())), self.index.version)

    def prepare(self) -> None:
        self.bm25.prepare()

    @property
    def input_depth(self) -> int:  # type: ignore[override]
        return self.settings["fb_docs"]

    def limit(self, k: int) -> "RM3":
        return RM3(self.index, **{**self.settings, "k": min(k, self.settings["k"])})

    @property
    def space(self) -> Index:
        return self.index

    def expand(self, text: str, fb_docs: np.ndarray, fb_scores: np.ndarray) -> dict[str, float]:
        """The interpolated query: index term -> weight (L1-normalised)."""
        s = self.settings
        query = Counter(self.index.analyzer.terms(text))
        total = sum(query.values()) or 1
        expanded = {t: s["orig_weight"] * c / total for t, c in query.items()}
        model: Counter[str] = Counter()
        n_docs = self.index.n_docs
        for doc, score in zip(self.index.docs(fb_docs), fb_scores.tolist()):
            tfs = Counter(self.index.analyzer.terms(doc_text(doc, self.index.fields)))
            kept = [(t, tf) for t, tf in tfs.items()
                    if 2 <= len(t) <= 20 and _ALNUM.fullmatch(t) and self.index.df(t) / n_docs <= s["max_df"]]
            kept = sorted(kept, key=lambda item: (-item[1], item[0]))[: s["fb_terms"]]
            norm = sum(tf for _, tf in kept)
            for term, tf in kept:
                model[term] += score * tf / norm
        top = model.most_common(s["fb_terms"])
        mass = sum(w for _, w in top) or 1.0
        for term, w in top:
            expanded[term] = expanded.get(term, 0.0) + (1 - s["orig_weight"]) * w / mass
        return expanded

    def execute(self, runner: Runner, queries: Sequence[Query], candidates: Candidates | None) -> Candidates:
        if candidates is None:
            raise CascadeError("rm3 expands queries from feedback documents: put a first stage before it (bm25 >> rm3)")
        if candidates.space is not self.index:
            raise CascadeError("rm3 needs candidates from the same index (e.g. bm25 >> rm3)")
        docs, scores = [], []
        seconds = np.zeros(len(queries))
        n = self.settings["fb_docs"]
        for i, (q, (_, fb_docs, fb_scores)) in enumerate(zip(queries, candidates)):
            start = time.perf_counter()
            offsets, d, s = self.bm25.rank_weighted([self.expand(q.text, fb_docs[:n], fb_scores[:n])],
                                                    self.settings["k"])
            seconds[i] = time.perf_counter() - start
            docs.append(d)
            scores.append(s)
        out = Candidates.from_lists([q.id for q in queries], docs, scores, self.index)
        return out.timed(seconds, PER_QUERY)

    def __str__(self) -> str:
        return format_call(self.name, (), non_defaults(PARAMS, self.settings))


def _rm3(ctx: Context, **params: Any) -> Pipeline:
    return RM3(ctx.index("rm3"), **params)


def _bm25_rm3(ctx: Context, **params: Any) -> Pipeline:
    index = ctx.index("bm25_rm3")
    return BM25(index, k1=params["k1"], b=params["b"]) >> RM3(index, **params)


register_stage("rm3", _rm3, params=PARAMS,
               help="RM3 expansion from the incoming candidates' top documents, then BM25")
register_stage("bm25_rm3", _bm25_rm3, params=PARAMS, help="bm25 >> rm3 (k1 and b apply to both)")
