"""Turning a batch of tokenised queries into the kernels' flat (term, count) arrays, in numba."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def count_terms(numbers: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Query q's tokens are numbers[bounds[q]:bounds[q + 1]] (term numbers, -1: none). Returns
    (offsets, terms, counts): each query's distinct terms in first-seen order with how often
    they occur, flat and split by offsets."""
    n_queries = len(bounds) - 1
    offsets = np.zeros(n_queries + 1, dtype=np.int64)
    terms = np.empty(len(numbers), dtype=np.int64)
    counts = np.empty(len(numbers), dtype=np.float64)
    n = 0
    for q in range(n_queries):
        start = n
        for i in range(bounds[q], bounds[q + 1]):
            t = numbers[i]
            if t < 0:
                continue
            j = start
            while j < n and terms[j] != t:  # queries are short: a scan beats hashing
                j += 1
            if j == n:
                terms[n] = t
                counts[n] = 1.0
                n += 1
            else:
                counts[j] += 1.0
        offsets[q + 1] = n
    return offsets, terms[:n].copy(), counts[:n].copy()
