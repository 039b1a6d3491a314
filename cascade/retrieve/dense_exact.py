"""Exact dense search: the top-k documents by dot product with each query vector.

The query vectors are multiplied with memory-mapped document vectors in chunks (one BLAS call
per chunk for all queries at once) and a running top k is kept, so memory stays bounded
whatever the collection size; ties go to the lower document number.

>>> import numpy as np
>>> docs, scores = exact_search(np.eye(3, dtype=np.float32), np.array([[0.0, 1.0, 0.5]], np.float32), 2)
>>> docs.tolist(), scores.tolist()
([[1, 2]], [[1.0, 0.5]])
"""

from __future__ import annotations

import numpy as np

CHUNK = 16384  # document vectors converted to float32 per BLAS call


def top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the column numbers and scores of the k best, best first (ties: lower column first)."""
    k = min(k, scores.shape[1])
    if k == 0:
        return np.zeros((len(scores), 0), np.int64), np.zeros((len(scores), 0), scores.dtype)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1] else \
        np.tile(np.arange(scores.shape[1]), (len(scores), 1))
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)


def exact_search(vectors: np.ndarray, queries: np.ndarray, k: int,
                 allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(doc numbers[Q, k'], scores[Q, k']) of the best k by dot product over ``vectors`` [n, d];
    with ``allowed`` (bool[n]) only those rows are scored (pre-filtering: k results whenever k
    rows are allowed)."""
    best_docs = np.zeros((len(queries), 0), np.int64)
    best_scores = np.zeros((len(queries), 0), np.float32)
    rows = None if allowed is None else np.flatnonzero(allowed)
    total = len(vectors) if rows is None else len(rows)
    for start in range(0, total, CHUNK):
        if rows is None:
            chunk = np.asarray(vectors[start:start + CHUNK], dtype=np.float32)
            numbers = np.arange(start, start + len(chunk))
        else:
            numbers = rows[start:start + CHUNK]
            chunk = np.asarray(vectors[numbers], dtype=np.float32)
        scores = queries @ chunk.T
        docs, vals = top_k_rows(scores, k)
        merged_scores = np.concatenate([best_scores, vals], axis=1)
        merged_docs = np.concatenate([best_docs, numbers[docs]], axis=1)
        keep, best_scores = top_k_rows(merged_scores, k)
        best_docs = np.take_along_axis(merged_docs, keep, axis=1)
    return best_docs, best_scores
