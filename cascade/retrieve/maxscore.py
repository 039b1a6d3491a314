"""Top-k retrieval over impact postings: block-max MaxScore, and an exhaustive path to check it.

MaxScore: Turtle & Flood, "Query evaluation: strategies and optimizations" (IP&M 1995).
Block-max bounds: Ding & Suel, "Faster top-k document retrieval using block-max indexes"
(SIGIR 2011); their use inside MaxScore as in Mallia, Siedlaczek & Suel, "An experimental
study of index compression and DAAT query processing methods" (ECIR 2019).

Terms are sorted by their score upper bound. Once k results are held, the terms whose
bounds together cannot beat the k-th score are *non-essential*: documents are drawn only
from the essential terms' lists, and a candidate is scored against the non-essential lists
only while its running score plus their (block-max refined) bounds can still beat the
threshold. Scores are summed in float64 and rounded to float32, the same as the exhaustive
path, so pruning returns exactly the exhaustive top-k (same documents, same scores, ties by
doc number).

Queries are processed one per thread (``threads`` > 1 runs a parallel batch).
"""

from __future__ import annotations

import types

import numpy as np
from numba import njit, prange

from cascade.kernels.keys import ENTRY, pack, trim, unpack_score, write_sorted
from cascade.kernels.topk import heap_offer, heap_sorted
from cascade.retrieve.taat_dense import CHUNK, DENSE_SHARE, dense_query

SLACK = 1e-9  # prune only when a bound is clearly below the threshold (float64 sum-order noise)


@njit(cache=True)
def _threshold(heap_scores: np.ndarray, size: int, k: int) -> float:
    return heap_scores[0] if size == k else -1.0


@njit(cache=True)
def _skip_blocks(indptr, docs, block_indptr, block_max, block_last, t, w, cum, pos, end, first_essential, block,
                 theta):  # type: ignore[no-untyped-def]
    """If no document up to the end of the essential lists' current blocks can beat ``theta``,
    move every essential cursor past that point and return True."""
    bound = cum[first_essential - 1] if first_essential > 0 else 0.0
    boundary = np.int64(2**62)
    for i in range(first_essential, len(t)):
        if pos[i] < end[i]:
            b = block_indptr[t[i]] + (pos[i] - indptr[t[i]]) // block
            bound += w[i] * np.float64(block_max[b])
            if block_last[b] < boundary:
                boundary = block_last[b]
    if bound * (1.0 + SLACK) > theta:
        return False
    for i in range(first_essential, len(t)):
        p = pos[i]
        while p < end[i]:
            b = block_indptr[t[i]] + (p - indptr[t[i]]) // block
            if block_last[b] <= boundary:
                p = indptr[t[i]] + (b - block_indptr[t[i]] + 1) * block  # next block
            else:
                while docs[p] <= boundary:
                    p += 1
                break
        pos[i] = min(p, end[i])
    return True


@njit(cache=True)
def maxscore_query(indptr, docs, impacts, block_indptr, block_max, block_last, term_max,
                   terms, weights, k, block, heap_scores, heap_docs, allowed):  # type: ignore[no-untyped-def]
    """Block-max MaxScore for one query; fills the heap, returns its size. Only documents
    with ``allowed[d]`` are candidates (an empty ``allowed``: every document)."""
    filtered = len(allowed) > 0
    m = len(terms)
    ub = np.empty(m)
    for i in range(m):
        ub[i] = weights[i] * np.float64(term_max[terms[i]])
    order = np.argsort(ub)
    t = terms[order]
    w = weights[order]
    u = ub[order]
    cum = np.empty(m)  # cum[i]: sum of bounds of terms 0..i
    acc = 0.0
    for i in range(m):
        acc += u[i]
        cum[i] = acc
    pos = np.empty(m, dtype=np.int64)
    end = np.empty(m, dtype=np.int64)
    bpos = np.empty(m, dtype=np.int64)
    for i in range(m):
        pos[i] = indptr[t[i]]
        end[i] = indptr[t[i] + 1]
        bpos[i] = block_indptr[t[i]]
    size = 0
    theta = -1.0
    first_essential = 0
    while True:
        # next candidate: smallest current doc among the essential lists
        d = np.int64(2**62)
        for i in range(first_essential, m):
            if pos[i] < end[i] and docs[pos[i]] < d:
                d = docs[pos[i]]
        if d == 2**62:
            break
        if size == k and _skip_blocks(indptr, docs, block_indptr, block_max, block_last, t, w, cum, pos, end,
                                      first_essential, block, theta):
            continue
        if filtered and not allowed[d]:
            for i in range(first_essential, m):
                if pos[i] < end[i] and docs[pos[i]] == d:
                    pos[i] += 1
            continue
        score = 0.0
        for i in range(first_essential, m):
            if pos[i] < end[i] and docs[pos[i]] == d:
                score += w[i] * np.float64(impacts[pos[i]])
                pos[i] += 1
        alive = True
        for i in range(first_essential - 1, -1, -1):
            rest = cum[i - 1] if i > 0 else 0.0
            if (score + cum[i]) * (1.0 + SLACK) <= theta:
                alive = False
                break
            tb = bpos[i]
            last_block = block_indptr[t[i] + 1]
            while tb < last_block and block_last[tb] < d:
                tb += 1
            bpos[i] = tb
            if tb == last_block:  # list exhausted
                pos[i] = end[i]
                continue
            if (score + w[i] * np.float64(block_max[tb]) + rest) * (1.0 + SLACK) <= theta:
                alive = False
                break
            start = indptr[t[i]] + (tb - block_indptr[t[i]]) * block
            p = max(pos[i], start)
            while p < end[i] and docs[p] < d:
                p += 1
            pos[i] = p
            if p < end[i] and docs[p] == d:
                score += w[i] * np.float64(impacts[p])
        if not alive:
            continue
        s32 = np.float64(np.float32(score))
        if s32 <= 0.0:
            continue
        size = heap_offer(heap_scores, heap_docs, size, k, s32, d)
        new_theta = _threshold(heap_scores, size, k)
        if new_theta != theta:
            theta = new_theta
            while first_essential < m and cum[first_essential] * (1.0 + SLACK) <= theta:
                first_essential += 1
    return size


@njit(cache=True)
def exhaustive_query(indptr, docs, impacts, terms, weights, k, acc, touched, out_docs, out_scores, row,
                     allowed):  # type: ignore[no-untyped-def]
    """Term-at-a-time over every posting, then exact top-k by partition; returns the count.

    ``acc`` (float64[N], all zero) is left all zero again. Only documents with
    ``allowed[d]`` are kept (an empty ``allowed``: every document).
    """
    filtered = len(allowed) > 0
    n = 0
    for i in range(len(terms)):
        wt = weights[i]
        for p in range(indptr[terms[i]], indptr[terms[i] + 1]):
            d = np.uint32(docs[p])
            touched[n] = d
            n += acc[d] == 0.0
            acc[d] += wt * np.float64(impacts[p])
    keys = np.empty(n, dtype=np.uint64)
    kept = 0
    for j in range(n):
        d = touched[j]
        if acc[d] > 0.0 and (not filtered or allowed[d]):
            keys[kept] = pack(acc[d], d)
            kept += 1
        acc[d] = 0.0
    return write_sorted(keys, kept, k, out_docs, out_scores, row)


RANGE = 1 << 15  # documents per range: a float64 accumulator of 256 KiB stays in L2


@njit(cache=True, inline="always")
def _first_at_least(docs, lo, hi, target):  # type: ignore[no-untyped-def]
    """First position in docs[lo:hi] (ascending) holding a value >= target (hi if none)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if docs[mid] < target:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def range_query(indptr, docs, impacts, block_indptr, block_max, block_last, q_terms, q_weights, qa, qb, k, block,
                n_docs, acc, touched, pool, pos, end, bpos, out_docs, out_scores, row, allowed):  # type: ignore[no-untyped-def]
    """Term-at-a-time within document ranges, skipping ranges whose block-max bound cannot
    beat the current k-th score; writes the top k and returns how many there are. Only
    documents with ``allowed[d]`` are candidates (an empty ``allowed``: every document), so a
    filtered or tombstoned top-k still holds k documents when k qualify.

    Candidates collect as packed keys in a pool (capacity ``len(pool)`` > k) that is cut back
    to its best k by partition whenever it fills: linear time in the candidates.

    Document-range processing with range bounds follows Mackenzie, Petri & Moffat, "Anytime
    ranking on document-ordered indexes" (ACM TOIS 2022). ``acc`` (float64, RANGE long, or the
    segment's size when smaller: its length is the range's) is zero on entry and on return. The query is ``q_terms[qa:qb]`` / ``q_weights[qa:qb]``; ``pos``,
    ``end``, ``bpos`` are the worker's scratch. Nothing here slices a shared array or
    allocates: under threads, numba's reference counts and allocation counters are atomics
    that the workers would otherwise fight over.
    """
    filtered = len(allowed) > 0
    m = qb - qa
    for i in range(m):
        t = q_terms[qa + i]
        pos[i] = indptr[t]
        end[i] = indptr[t + 1]
        bpos[i] = block_indptr[t]
    size = 0
    theta = -1.0  # k-th best score once the pool has held k candidates
    kth_key = np.uint64(0xFFFFFFFFFFFFFFFF)
    entry = 0.0  # below this no score can reach the k-th (see ENTRY)
    full = False
    cap = len(pool)
    span = len(acc)
    for r0 in range(0, n_docs, span):
        r1 = r0 + span
        if full:  # bound this range by the block maxima of the blocks that overlap it
            bound = 0.0
            for i in range(m):
                b = bpos[i]
                last = block_indptr[q_terms[qa + i] + 1]
                while b < last and block_last[b] < r0:
                    b += 1
                bpos[i] = b
                best = 0.0
                while b < last:
                    if np.float64(block_max[b]) > best:
                        best = np.float64(block_max[b])
                    if block_last[b] >= r1:
                        break
                    b += 1
                bound += q_weights[qa + i] * best
            if bound * (1.0 + SLACK) <= theta:
                for i in range(m):  # skip the range: jump whole blocks, then scan
                    b = bpos[i]
                    last = block_indptr[q_terms[qa + i] + 1]
                    while b < last and block_last[b] < r1:
                        b += 1
                    bpos[i] = b
                    p = max(pos[i], indptr[q_terms[qa + i]] + (b - block_indptr[q_terms[qa + i]]) * block)
                    while p < end[i] and docs[p] < r1:
                        p += 1
                    pos[i] = min(p, end[i])
                continue
        n = 0
        for i in range(m):
            wt = q_weights[qa + i]
            p0 = pos[i]
            stop = end[i] if r1 >= n_docs else _first_at_least(docs, p0, end[i], r1)
            for p in range(p0, stop):
                d = np.uint32(docs[p] - r0)  # unsigned: indexing skips the negative-index check
                touched[n] = d
                n += acc[d] == 0.0  # branch-free: remember d the first time it scores
                acc[d] += wt * np.float64(impacts[p])
            pos[i] = stop
        for j in range(n):
            d = touched[j]
            score = acc[d]
            acc[d] = 0.0
            # a float comparison first: most documents fall below the k-th score, and packing is dearer
            if score >= entry and score > 0.0 and (not filtered or allowed[d + r0]):
                key = pack(score, d + r0)
                if key < kth_key:
                    pool[size] = key
                    size += 1
                    if size == cap:
                        kth_key = trim(pool, size, k)
                        size = k
                        theta = unpack_score(kth_key)
                        entry = theta * ENTRY
                        full = True
    return write_sorted(pool, size, k, out_docs, out_scores, row)


@njit(cache=True)
def _block_of(n_queries, n_workers, worker):  # type: ignore[no-untyped-def]
    """A contiguous block of queries per worker: no two threads write the same cache lines."""
    return worker * n_queries // n_workers, (worker + 1) * n_queries // n_workers


@njit(cache=True)
def _postings(indptr, q_terms, qa, qb):  # type: ignore[no-untyped-def]
    total = 0
    for i in range(qa, qb):
        total += indptr[q_terms[i] + 1] - indptr[q_terms[i]]
    return total


@njit(cache=True)
def _max_terms(q_offsets):  # type: ignore[no-untyped-def]
    longest = 1
    for q in range(len(q_offsets) - 1):
        longest = max(longest, q_offsets[q + 1] - q_offsets[q])
    return longest


# One batch driver per mode, so a process loads (from numba's cache) only the code it runs.
def _ranges_batch(indptr, docs, impacts, block_indptr, block_max, block_last, term_max, q_offsets, q_terms,
                  q_weights, k, block, n_docs, n_workers, out_docs, out_scores, out_counts, allowed):  # type: ignore[no-untyped-def]
    n_queries = len(q_offsets) - 1
    max_terms = _max_terms(q_offsets)
    # scratch sized to the segment: a small segment (or a single query) does not pay for
    # zeroing a whole range's accumulator
    span = min(RANGE, CHUNK * ((n_docs + CHUNK - 1) // CHUNK))
    for worker in prange(n_workers):
        acc = np.zeros(span)
        touched = np.empty(span, dtype=np.uint32)
        pool = np.empty(max(4 * k, 64), dtype=np.uint64)
        pos = np.empty(max_terms, dtype=np.int64)
        end = np.empty(max_terms, dtype=np.int64)
        bpos = np.empty(max_terms, dtype=np.int64)
        maxima = np.empty(span // CHUNK if n_docs <= RANGE else 0)
        best = np.empty(k)
        lo, hi = _block_of(n_queries, n_workers, worker)
        for q in range(lo, hi):
            qa, qb = q_offsets[q], q_offsets[q + 1]
            if qb == qa:
                out_counts[q] = 0
            elif n_docs <= RANGE and k * CHUNK * DENSE_SHARE <= n_docs and \
                    DENSE_SHARE * _postings(indptr, q_terms, qa, qb) >= n_docs:
                out_counts[q] = dense_query(indptr, docs, impacts, q_terms, q_weights, qa, qb, k, n_docs, acc, maxima,
                                            best, pool, out_docs, out_scores, q, allowed)
            else:
                out_counts[q] = range_query(
                    indptr, docs, impacts, block_indptr, block_max, block_last, q_terms, q_weights, qa, qb, k, block,
                    n_docs, acc, touched, pool, pos, end, bpos, out_docs, out_scores, q, allowed)


def _exhaustive_batch(indptr, docs, impacts, block_indptr, block_max, block_last, term_max, q_offsets, q_terms,
                      q_weights, k, block, n_docs, n_workers, out_docs, out_scores, out_counts, allowed):  # type: ignore[no-untyped-def]
    n_queries = len(q_offsets) - 1
    for worker in prange(n_workers):
        acc = np.zeros(n_docs)
        touched = np.empty(n_docs, dtype=np.uint32)
        lo, hi = _block_of(n_queries, n_workers, worker)
        for q in range(lo, hi):
            qa, qb = q_offsets[q], q_offsets[q + 1]
            out_counts[q] = 0 if qb == qa else exhaustive_query(
                indptr, docs, impacts, q_terms[qa:qb], q_weights[qa:qb], k, acc, touched, out_docs, out_scores, q,
                allowed)


def _maxscore_batch(indptr, docs, impacts, block_indptr, block_max, block_last, term_max, q_offsets, q_terms,
                    q_weights, k, block, n_docs, n_workers, out_docs, out_scores, out_counts, allowed):  # type: ignore[no-untyped-def]
    n_queries = len(q_offsets) - 1
    for worker in prange(n_workers):
        heap_scores = np.empty(k)
        heap_docs = np.empty(k, dtype=np.int64)
        lo, hi = _block_of(n_queries, n_workers, worker)
        for q in range(lo, hi):
            qa, qb = q_offsets[q], q_offsets[q + 1]
            if qb == qa:
                out_counts[q] = 0
                continue
            size = maxscore_query(indptr, docs, impacts, block_indptr, block_max, block_last, term_max,
                                  q_terms[qa:qb], q_weights[qa:qb], k, block, heap_scores, heap_docs, allowed)
            heap_sorted(heap_scores, heap_docs, size, out_docs[q], out_scores[q])
            out_counts[q] = size


def _own_copy(driver, suffix):  # type: ignore[no-untyped-def]
    """The same function under another name. numba's on-disk cache names an entry after the
    function and keys it by signature, not by the ``parallel`` flag: a serial and a parallel
    build of one function would share an entry, and whichever was saved first would be loaded
    for both (the parallel kernel then runs on one thread)."""
    copy = types.FunctionType(driver.__code__, driver.__globals__, driver.__name__ + suffix, driver.__defaults__)
    copy.__qualname__ = driver.__qualname__ + suffix
    return copy


# mode -> (serial kernel, parallel kernel); modes are numbered as in impact_search
KERNELS = {
    mode: (njit(cache=True)(driver), njit(cache=True, parallel=True)(_own_copy(driver, "_parallel")))
    for mode, driver in ((0, _maxscore_batch), (1, _exhaustive_batch), (2, _ranges_batch))
}
