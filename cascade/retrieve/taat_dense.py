"""Term-at-a-time over a dense accumulator, for queries that touch a large share of a small segment.

When a query's postings number at least a quarter of the segment's documents (long SciFact
claims, Vaswani's common words), remembering which documents were touched costs more than
looking at all of them. So every posting is added into a float64 accumulator with no
bookkeeping, the maximum of each chunk of ``CHUNK`` accumulators is taken, and the k-th largest
chunk maximum bounds the k-th score from below: k different documents score at least that
much. Only chunks whose maximum reaches it are read document by document.

Chunks are strided: with ``n`` chunks, chunk c holds documents c, c + n, c + 2n, ..., so the
maxima pass is a vertical maximum of ``CHUNK`` consecutive rows of ``n`` accumulators, which
compiles to SIMD instructions (a maximum within each 16 neighbours does not). It compares the
float64 bit patterns as integers: for non-negative doubles that is the same order, and a
negative sum (only from a negative query weight) compares below every positive one, so a chunk
is read exactly when it holds a positive score that can reach the k-th.

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
def chunk_maxima(acc, n_chunks, out):  # type: ignore[no-untyped-def]
    """out[c] = the largest of acc[c], acc[c + n_chunks], ... (CHUNK values), for c < n_chunks.

    acc[:CHUNK * n_chunks] is read; past the segment's documents it must be zero."""
    bits = acc.view(np.int64)
    best = out.view(np.int64)
    for c in range(n_chunks):
        best[c] = bits[c]
    for j in range(1, CHUNK):
        row = j * n_chunks
        for c in range(n_chunks):
            best[c] = max(best[c], bits[row + c])


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
    """Top k of query ``q_terms[qa:qb]`` over a whole segment; writes row ``row`` of the outputs
    and returns the count. ``acc`` (at least n_docs rounded up to a multiple of CHUNK long) is zero
    on entry and on return; ``maxima`` holds one value per chunk.
    Only documents with ``allowed[d]`` are candidates (an empty ``allowed``: every document);
    under a filter the chunk bound is not used (a chunk's best may be a filtered-out document)."""
    filtered = len(allowed) > 0
    for i in range(qa, qb):
        t = q_terms[i]
        wt = q_weights[i]
        for p in range(indptr[t], indptr[t + 1]):
            acc[np.uint32(docs[p])] += wt * np.float64(impacts[p])  # unsigned: no negative-index check
    n_chunks = (n_docs + CHUNK - 1) // CHUNK
    chunk_maxima(acc, n_chunks, maxima)
    entry = 0.0 if filtered else _kth_largest(maxima, n_chunks, k, best) * ENTRY
    size = 0
    kth_key = np.uint64(0xFFFFFFFFFFFFFFFF)
    for c in range(n_chunks):
        if maxima[c] < entry or not maxima[c] > 0.0:
            continue
        for d in range(c, n_docs, n_chunks):
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
    acc[:CHUNK * n_chunks] = 0.0
    return write_sorted(pool, size, k, out_docs, out_scores, row)
