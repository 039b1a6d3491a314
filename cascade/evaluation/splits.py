"""Interpolation / extrapolation split of test queries by their similarity to training queries.

Zhan, Xie, Mao, Liu, Guo, Zhang & Ma, "Evaluating Interpolation and Extrapolation Performance
of Neural Retrieval Models" (CIKM 2022): test queries much like training queries measure how a
trained model *interpolates*; the others how it *extrapolates*, and models differ between the
two. Here each test query's similarity to the training data is its highest TF-IDF cosine with
any training query (terms from the index's analyzer: folded, stopped, stemmed; idf over the
training queries); queries at or above the median similarity (a rule fixed in advance, never
tuned) form the ``interpolation`` split, the rest ``extrapolation``, and every metric is
reported per split.

>>> from cascade.core.types import Query
>>> train = [Query("t1", "vitamin d and bone density"), Query("t2", "statins lower cholesterol")]
>>> test = [Query("a", "bone density vitamin d"), Query("b", "malaria vaccine trial")]
>>> sims = training_similarity(test, train)
>>> round(sims["a"], 3), sims["b"]
(1.0, 0.0)
>>> splits, threshold = split_by_similarity(sims)
>>> splits, round(threshold, 3)
({'a': 'interpolation', 'b': 'extrapolation'}, 0.5)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from cascade.core.errors import CascadeError
from cascade.core.types import Query
from cascade.data.readers import read_jsonl_queries
from cascade.text.analyzer import Analyzer

INTERPOLATION, EXTRAPOLATION = "interpolation", "extrapolation"


def read_training_queries(path: Path) -> list[Query]:
    """Training queries from a ``queries.jsonl`` file, or from a dataset directory holding one."""
    path = Path(path)
    file = path / "queries.jsonl" if path.is_dir() else path
    if not file.is_file():
        raise CascadeError(f"--split-by-training {path}: no such file (a queries.jsonl, or a directory with one)")
    queries = read_jsonl_queries(file)
    if not queries:
        raise CascadeError(f"--split-by-training {path}: no training queries")
    return queries


def _tfidf(texts: Sequence[list[str]], vocab: dict[str, int], idf: np.ndarray) -> np.ndarray:
    """Unit-length TF-IDF rows (dense: query sets are small) over ``vocab``; unknown terms dropped."""
    out = np.zeros((len(texts), len(vocab)), dtype=np.float64)
    for i, terms in enumerate(texts):
        for t in terms:
            j = vocab.get(t)
            if j is not None:
                out[i, j] += 1.0
    out *= idf
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms > 0, norms, 1.0)


def training_similarity(test: Sequence[Query], train: Sequence[Query], analyzer: Analyzer | None = None,
                        chunk: int = 512) -> dict[str, float]:
    """Each test query's highest TF-IDF cosine with any training query (idf over the training
    queries, smoothed: ``log((1 + N) / (1 + df)) + 1``)."""
    analyzer = analyzer or Analyzer()
    train_terms = [analyzer.terms(q.text) for q in train]
    df: dict[str, int] = {}
    for terms in train_terms:
        for t in set(terms):
            df[t] = df.get(t, 0) + 1
    vocab = {t: i for i, t in enumerate(sorted(df))}
    n = len(train)
    idf = np.array([math.log((1 + n) / (1 + df[t])) + 1 for t in sorted(df)], dtype=np.float64)
    train_m = _tfidf(train_terms, vocab, idf)
    test_m = _tfidf([analyzer.terms(q.text) for q in test], vocab, idf)
    best = np.zeros(len(test), dtype=np.float64)
    for start in range(0, len(train), chunk):
        best = np.maximum(best, (test_m @ train_m[start:start + chunk].T).max(axis=1, initial=0.0))
    return {q.id: float(v) for q, v in zip(test, best)}


def split_by_similarity(similarity: Mapping[str, float]) -> tuple[dict[str, str], float]:
    """(query id -> split, threshold): at or above the median similarity is interpolation."""
    if not similarity:
        return {}, 0.0
    threshold = float(np.median(list(similarity.values())))
    return {q: INTERPOLATION if v >= threshold else EXTRAPOLATION for q, v in similarity.items()}, threshold


def metrics_by_split(per_query: Mapping[str, Mapping[str, float]], splits: Mapping[str, str]
                     ) -> dict[str, dict[str, float]]:
    """Each split's mean of every metric over its queries (those with values)."""
    out: dict[str, dict[str, float]] = {}
    for name in (INTERPOLATION, EXTRAPOLATION):
        rows = [per_query[q] for q, s in splits.items() if s == name and q in per_query]
        if rows:
            out[name] = {m: float(np.mean([r[m] for r in rows])) for m in rows[0]}
    return out


__all__ = ["read_training_queries", "training_similarity", "split_by_similarity", "metrics_by_split",
           "INTERPOLATION", "EXTRAPOLATION"]
