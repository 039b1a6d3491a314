"""Turning a batch of tokenised queries into the kernels' flat (term, count) arrays.

One Python function, run as it is (no numba to load: an interactive process's first query) or
compiled by numba for batches; both give the same arrays.
"""

from __future__ import annotations

from functools import cache
from typing import Callable

import numpy as np

from cascade.text.marks import QUERY_END

CountFn = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray, np.ndarray]]


def _count_terms(numbers: np.ndarray, n_queries: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


@cache
def _compiled() -> CountFn:
    from numba import njit

    return njit(cache=True)(_count_terms)  # type: ignore[no-any-return]


def count_terms(numbers: np.ndarray, n_queries: int, *, compiled: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``numbers``: the term numbers of a batch's tokens, NO_TERM for none, the queries separated by
    QUERY_END (n_queries - 1 of them). Returns (offsets, terms, counts): each query's distinct terms
    in first-seen order with how often they occur, flat and split by offsets."""
    return (_compiled() if compiled else _count_terms)(numbers, n_queries)
