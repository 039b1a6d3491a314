"""Top-k selection over packed (score, doc) keys inside numba kernels.

A result packs into one uint64 whose ascending order is score descending, then doc ascending
(the order of an exhaustive sort), so selecting the k smallest keys selects the top k, ties
included, with plain integer comparisons.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# Below theta * ENTRY no float64 rounds to the float32 theta (relative float32 spacing is at
# least 6e-8), so a float64 score under it cannot reach or tie a k-th float32 score of theta.
ENTRY = 1.0 - 1e-7


@njit(cache=True, inline="always")
def pack(score: float, doc: int) -> np.uint64:
    """One sortable key per result: ascending keys are score descending, then doc ascending.

    Scores are positive float32 values, whose bit patterns order like the numbers."""
    bits = np.uint64(np.float32(score).view(np.uint32))
    return ((np.uint64(0xFFFFFFFF) - bits) << np.uint64(32)) | np.uint64(doc)


@njit(cache=True, inline="always")
def unpack_score(key: np.uint64) -> float:
    """The float32 score inside a packed key, exactly, without allocating."""
    bits = np.int64(np.uint64(0xFFFFFFFF) - (key >> np.uint64(32)))
    exponent = (bits >> 23) & 0xFF
    mantissa = bits & 0x7FFFFF
    if exponent == 0:
        return math.ldexp(float(mantissa), -149)
    return math.ldexp(float(mantissa | 0x800000), exponent - 150)


@njit(cache=True)
def select(a, n, k):  # type: ignore[no-untyped-def]
    """In-place quickselect: afterwards a[:k] holds the k smallest of the (distinct) keys a[:n],
    and a[k-1] is the largest of them, which is returned."""
    lo, hi, target = 0, n - 1, k - 1
    while lo < hi:
        mid = (lo + hi) >> 1
        x, y, z = a[lo], a[mid], a[hi]
        pivot = max(min(x, y), min(max(x, y), z))  # median of three
        i, j = lo, hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if target <= j:
            hi = j
        elif target >= i:
            lo = i
        else:
            break
    return a[target]


@njit(cache=True)
def trim(pool, n, k):  # type: ignore[no-untyped-def]
    """Keep the k best (smallest) of the first n keys at the front; returns the k-th key."""
    return select(pool, n, k)


@njit(cache=True)
def write_sorted(pool, n, k, out_docs, out_scores, row):  # type: ignore[no-untyped-def]
    """Write the best min(k, n) keys in order into row ``row`` of the outputs; returns the count."""
    if n > k:
        trim(pool, n, k)
        n = k
    pool[:n].sort()
    for j in range(n):
        out_docs[row, j] = np.int32(pool[j] & np.uint64(0xFFFFFFFF))
        out_scores[row, j] = np.float32(unpack_score(pool[j]))
    return n
