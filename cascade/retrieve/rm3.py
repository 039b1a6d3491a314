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

from cascade.data.types import Query
from cascade.errors import CascadeError
from cascade.index.index import Index
from cascade.index.segment import doc_text
from cascade.pipeline.base import Pipeline, format_call
from cascade.pipeline.candidates import Candidates

_ALNUM = re.compile(r"[a-z0-9]+")
DEFAULTS = {"fb_docs": 10, "fb_terms": 10, "orig_weight": 0.5, "max_df": 0.1, "k": 1000, "k1": 0.9, "b": 0.4}


class RM3(Pipeline):
    """Query expansion from the incoming candidates, then BM25 retrieval of ``k`` documents."""

    name = "rm3"
    cacheable = True

    def __init__(self, index: Index, fb_docs: int = 10, fb_terms: int = 10, orig_weight: float = 0.5,
                 max_df: float = 0.1, k: int = 1000, k1: float = 0.9, b: float = 0.4) -> None:
        if fb_docs < 1 or fb_terms < 1 or k < 1:
            raise CascadeError("rm3 needs fb_docs, fb_terms and k of at least 1")
        if not 0 <= orig_weight <= 1 or not 0 < max_df <= 1:
            raise CascadeError("rm3 needs 0 <= orig_weight <= 1 and 0 < max_df <= 1")
        self.index = index
        self.settings = {"fb_docs": int(fb_docs), "fb_terms": int(fb_terms), "orig_weight": float(orig_weight),
                         "max_df": float(max_df), "k": int(k), "k1": float(k1), "b": float(b)}
        self.bm25 = index.bm25(k1=k1, b=b, k=k)

    def key(self) -> tuple[Any, ...]:
        return (self.name, tuple(sorted(self.settings.items())), self.index.version)

    @property
    def input_depth(self) -> int:  # type: ignore[override]
        return self.settings["fb_docs"]

    @property
    def depth(self) -> int:  # type: ignore[override]
        return self.settings["k"]

    def with_depth(self, k: int) -> "RM3":
        return RM3(self.index, **{**self.settings, "k": k})

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

    def execute(self, executor: Any, queries: Sequence[Query], candidates: Candidates | None) -> Candidates:
        if candidates is None:
            raise CascadeError("rm3 expands queries from feedback documents: put a first stage before it (bm25 >> rm3)")
        if candidates.space is not self.index:
            raise CascadeError("rm3 needs candidates from the same index (e.g. bm25 >> rm3)")
        docs, scores = [], []
        seconds = np.zeros(len(queries))
        for i, (q, (_, fb_docs, fb_scores)) in enumerate(zip(queries, candidates.per_query())):
            start = time.perf_counter()
            n = self.settings["fb_docs"]
            weights = self.bm25.term_weights(self.expand(q.text, fb_docs[:n], fb_scores[:n]))
            d, s = self.bm25.rank_weighted(weights, self.settings["k"])
            seconds[i] = time.perf_counter() - start
            docs.append(d)
            scores.append(s)
        out = Candidates.from_lists([q.id for q in queries], docs, scores, self.index)
        out.query_seconds = seconds
        return out

    def __str__(self) -> str:
        return format_call(self.name, (), {k: v for k, v in self.settings.items() if v != DEFAULTS[k]})
