"""Term-at-a-time over a dense accumulator, for queries that touch a large share of a small segment.

When a query's postings number at least a quarter of the segment's documents (long SciFact
claims, Vaswani's common words), remembering which documents were touched costs more than
looking at all of them. So every posting is added into a float64 accumulator with no
bookkeeping, the maximum of each chunk of ``CHUNK`` accumulators is taken (a vectorised pass),
and the k-th largest chunk maximum bounds the k-th score from below: k different documents
score at least that much. Only chunks whose maximum reaches it are read document by document.
Scores are the same float64 sums, in the same term order, as every other path, so the top k
is identical to the exhaustive one, ties included.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from cascade.kernels.keys import ENTRY, pack, trim, unpack_score, write_sorted

CHUNK = 16  # accumulators per chunk maximum
DENSE_SHARE = 4  # take this path when postings * DENSE_SHARE >= documents


@njit(cache=True, fastmath=True)
def chunk_maxima(acc, n_docs, out):  # type: ignore[no-untyped-def]
    """out[c] = max(acc[c * CHUNK : (c + 1) * CHUNK]) for each chunk of acc[:n_docs]; returns the
    number of chunks. (fastmath only lets the max vectorise: a maximum does not round.)"""
    full = n_docs // CHUNK
    for c in range(full):
        lo = c * CHUNK
        best = acc[lo]
        for j in range(1, CHUNK):
            best = max(best, acc[lo + j])
        out[c] = best
    if full * CHUNK == n_docs:
        return full
    best = 0.0
    for d in range(full * CHUNK, n_docs):
        best = max(best, acc[d])
    out[full] = best
    return full + 1


@njit(cache=True)
def _kth_largest(values, n, k, best):  # type: ignore[no-untyped-def]
    """The k-th largest of values[:n] (0.0 if n < k), keeping the k largest sorted in ``best``."""
    if n < k:
        return 0.0
    for j in range(k):
        best[j] = 0.0
    for c in range(n):
        v = values[c]
        if v > best[0]:
            j = 1
            while j < k and best[j] < v:
                best[j - 1] = best[j]
                j += 1
            best[j - 1] = v
    return best[0]


@njit(cache=True)
def dense_query(indptr, docs, impacts, q_terms, q_weights, qa, qb, k, n_docs, acc, maxima, best, pool, out_docs,
                out_scores, row, allowed):  # type: ignore[no-untyped-def]
    """Top k of query ``q_terms[qa:qb]`` over a whole segment (n_docs <= len(acc)); writes row
    ``row`` of the outputs and returns the count. ``acc`` is zero on entry and on return.
    Only documents with ``allowed[d]`` are candidates (an empty ``allowed``: every document);
    under a filter the chunk bound is not used (a chunk's best may be a filtered-out document)."""
    filtered = len(allowed) > 0
    for i in range(qa, qb):
        t = q_terms[i]
        wt = q_weights[i]
        for p in range(indptr[t], indptr[t + 1]):
            acc[docs[p]] += wt * np.float64(impacts[p])
    n_chunks = chunk_maxima(acc, n_docs, maxima)
    entry = 0.0 if filtered else _kth_largest(maxima, n_chunks, k, best) * ENTRY
    size = 0
    kth_key = np.uint64(0xFFFFFFFFFFFFFFFF)
    for c in range(n_chunks):
        if maxima[c] < entry or maxima[c] <= 0.0:
            continue
        for d in range(c * CHUNK, min(n_docs, (c + 1) * CHUNK)):
            score = acc[d]
            if score >= entry and score > 0.0 and (not filtered or allowed[d]):
                key = pack(score, d)
                if key < kth_key:
                    pool[size] = key
                    size += 1
                    if size == len(pool):
                        kth_key = trim(pool, size, k)
                        size = k
                        entry = max(entry, unpack_score(kth_key) * ENTRY)
    for d in range(n_docs):
        acc[d] = 0.0
    return write_sorted(pool, size, k, out_docs, out_scores, row)
