"""Turning a batch of tokenised queries into the kernels' flat (term, count) arrays, in numba."""

from __future__ import annotations

import numpy as np
from numba import njit

from cascade.text.marks import QUERY_END


@njit(cache=True)
def count_terms(numbers: np.ndarray, n_queries: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``numbers``: the term numbers of a batch's tokens, NO_TERM for none, the queries separated by
    QUERY_END (n_queries - 1 of them). Returns (offsets, terms, counts): each query's distinct terms
    in first-seen order with how often they occur, flat and split by offsets."""
    offsets = np.zeros(n_queries + 1, dtype=np.int64)
    terms = np.empty(len(numbers), dtype=np.int64)
    counts = np.empty(len(numbers), dtype=np.float64)
    n = 0
    q = 0
    start = 0
    for i in range(len(numbers)):
        t = numbers[i]
        if t < 0:
            if t == QUERY_END:
                q += 1
                offsets[q] = n
                start = n
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
    offsets[q + 1:] = n
    return offsets, terms[:n].copy(), counts[:n].copy()
