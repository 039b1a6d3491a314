"""BM25's formula and its default parameters: the one place they are written.

Robertson & Zaragoza, "The Probabilistic Relevance Framework: BM25 and Beyond" (2009), with
the idf and length normalisation of Lucene's BM25Similarity, as Anserini uses it:

    score(q, d) = sum over terms t of q:  qtf(t) * idf(t) * tf / (tf + k1 * (1 - b + b * dl / avgdl))
    idf(t)      = ln(1 + (N - df + 0.5) / (df + 0.5))

An index stores the tf part of every posting (its *impact*) for the defaults; the retriever
(:mod:`cascade.retrieve.bm25`) supplies ``qtf * idf`` as query-term weights. The scalar
functions below are compiled by numba for the build kernel (:mod:`cascade.index.csr`) and run
on whole arrays by :func:`impacts_numpy`, so both paths compute the same float32 values.

>>> round(float(idf(1000, 10)), 4)
4.5574
>>> round(float(saturation(2.0, length_norm(K1, B, 100.0, 100.0))), 4)
0.6897
"""

from __future__ import annotations

import numpy as np

K1 = 0.9  # term-frequency saturation (Anserini's default)
B = 0.4  # length normalisation (Anserini's default)


def idf(n_docs: int, df: np.ndarray | int) -> np.ndarray:
    """Lucene's BM25 idf, ln(1 + (N - df + 0.5) / (df + 0.5)), as float64."""
    df = np.asarray(df, dtype=np.float64)
    return np.log1p((n_docs - df + 0.5) / (df + 0.5))


def length_norm(k1: float, b: float, doc_length: float, avgdl: float) -> float:
    """k1 * (1 - b + b * dl / avgdl) in float64 (stored rounded to float32)."""
    return k1 * (1.0 - b + b * doc_length / avgdl)


def saturation(tf: float, norm: float) -> float:
    """The tf part, tf / (tf + norm), in float32 arithmetic where the inputs are float32."""
    return tf / (tf + norm)


def impacts_numpy(tfs: np.ndarray, doclens: np.ndarray, docs: np.ndarray, k1: float, b: float,
                  avgdl: float) -> np.ndarray:
    """float32 impact of every posting (``docs[p]`` is posting p's document): the values of the
    numba build kernel ``cascade.index.csr.bm25_impacts_kernel``, bit for bit."""
    avgdl = float(avgdl or 1.0)
    norm = length_norm(float(k1), float(b), doclens.astype(np.float64), avgdl).astype(np.float32)
    return saturation(tfs.astype(np.float32), norm[docs])
