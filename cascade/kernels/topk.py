"""A bounded min-heap for top-k selection inside numba kernels.

Entries order by (score, -doc): the root is the worst kept result — the lowest score and,
among equal scores, the highest doc number. Documents arrive in increasing doc order in
the kernels that use it, so a newcomer with a score equal to the root's is worse than it
and is rejected; that reproduces the (score desc, doc asc) order of an exhaustive sort.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, inline="always")
def _worse(s1: float, d1: int, s2: float, d2: int) -> bool:
    """Is result (s1, d1) ranked below (s2, d2)?"""
    return s1 < s2 or (s1 == s2 and d1 > d2)


@njit(cache=True)
def heap_push(scores: np.ndarray, docs: np.ndarray, size: int, score: float, doc: int) -> int:
    """Add to a heap that is not full; returns the new size."""
    i = size
    scores[i] = score
    docs[i] = doc
    while i > 0:
        parent = (i - 1) // 2
        if _worse(scores[i], docs[i], scores[parent], docs[parent]):
            scores[i], scores[parent] = scores[parent], scores[i]
            docs[i], docs[parent] = docs[parent], docs[i]
            i = parent
        else:
            break
    return size + 1


@njit(cache=True)
def heap_replace_root(scores: np.ndarray, docs: np.ndarray, size: int, score: float, doc: int) -> None:
    """Replace the worst entry of a full heap and restore the heap order."""
    scores[0] = score
    docs[0] = doc
    i = 0
    while True:
        left = 2 * i + 1
        if left >= size:
            break
        child = left
        right = left + 1
        if right < size and _worse(scores[right], docs[right], scores[left], docs[left]):
            child = right
        if _worse(scores[child], docs[child], scores[i], docs[i]):
            scores[i], scores[child] = scores[child], scores[i]
            docs[i], docs[child] = docs[child], docs[i]
            i = child
        else:
            break


@njit(cache=True)
def heap_offer(scores: np.ndarray, docs: np.ndarray, size: int, k: int, score: float, doc: int) -> int:
    """Keep (score, doc) if it is among the k best so far; returns the new size."""
    if size < k:
        return heap_push(scores, docs, size, score, doc)
    if _worse(scores[0], docs[0], score, doc):
        heap_replace_root(scores, docs, size, score, doc)
    return size


@njit(cache=True)
def heap_sorted(scores: np.ndarray, docs: np.ndarray, size: int,
                out_docs: np.ndarray, out_scores: np.ndarray) -> None:
    """Write the heap's entries best first (score desc, doc asc) into the outputs."""
    order = np.argsort(-scores[:size], kind="mergesort")
    # ties: mergesort keeps heap order; fix them to doc ascending
    tmp_s = scores[:size][order]
    tmp_d = docs[:size][order]
    start = 0
    while start < size:
        end = start + 1
        while end < size and tmp_s[end] == tmp_s[start]:
            end += 1
        if end - start > 1:
            tmp_d[start:end] = np.sort(tmp_d[start:end])
        start = end
    for i in range(size):
        out_docs[i] = tmp_d[i]
        out_scores[i] = tmp_s[i]
