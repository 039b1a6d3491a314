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

import numpy as np
from numba import njit, prange

from cascade.kernels.topk import heap_offer, heap_sorted

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
                   terms, weights, k, block, heap_scores, heap_docs):  # type: ignore[no-untyped-def]
    """Block-max MaxScore for one query; fills the heap, returns its size."""
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
def exhaustive_query(indptr, docs, impacts, terms, weights, k, acc, touched, out_docs, out_scores):  # type: ignore[no-untyped-def]
    """Term-at-a-time over every posting, then exact top-k by partition; returns the count.

    ``acc`` (float64[N], all zero) is left all zero again.
    """
    n = 0
    for i in range(len(terms)):
        wt = weights[i]
        for p in range(indptr[terms[i]], indptr[terms[i] + 1]):
            d = docs[p]
            if acc[d] == 0.0:
                touched[n] = d
                n += 1
            acc[d] += wt * np.float64(impacts[p])
    cand_docs = touched[:n].copy()
    cand_scores = np.empty(n)
    kept = 0
    for j in range(n):
        s32 = np.float64(np.float32(acc[cand_docs[j]]))
        acc[cand_docs[j]] = 0.0
        if s32 > 0.0:
            cand_docs[kept] = cand_docs[j]
            cand_scores[kept] = s32
            kept += 1
    cand_docs = cand_docs[:kept]
    cand_scores = cand_scores[:kept]
    if kept > k:
        kth = np.partition(cand_scores.copy(), kept - k)[kept - k]
        keep = cand_scores >= kth
        cand_docs = cand_docs[keep]
        cand_scores = cand_scores[keep]
    by_doc = np.argsort(cand_docs, kind="mergesort")
    by_score = np.argsort(-cand_scores[by_doc], kind="mergesort")  # stable: ties stay doc-ascending
    order = by_doc[by_score]
    count = min(k, len(order))
    for j in range(count):
        out_docs[j] = cand_docs[order[j]]
        out_scores[j] = cand_scores[order[j]]
    return count


def _search_batch(indptr, docs, impacts, block_indptr, block_max, block_last, term_max, q_offsets, q_terms,
                  q_weights, k, block, n_docs, exhaustive, n_workers, out_docs, out_scores, out_counts):  # type: ignore[no-untyped-def]
    n_queries = len(q_offsets) - 1
    for worker in prange(n_workers):
        heap_scores = np.empty(k)
        heap_docs = np.empty(k, dtype=np.int64)
        acc = np.zeros(n_docs if exhaustive else 1)
        touched = np.empty(n_docs if exhaustive else 1, dtype=np.int64)
        for q in range(worker, n_queries, n_workers):
            terms = q_terms[q_offsets[q]:q_offsets[q + 1]]
            weights = q_weights[q_offsets[q]:q_offsets[q + 1]]
            if len(terms) == 0:
                out_counts[q] = 0
                continue
            if exhaustive:
                out_counts[q] = exhaustive_query(indptr, docs, impacts, terms, weights, k, acc, touched,
                                                 out_docs[q], out_scores[q])
            else:
                size = maxscore_query(indptr, docs, impacts, block_indptr, block_max, block_last, term_max,
                                      terms, weights, k, block, heap_scores, heap_docs)
                heap_sorted(heap_scores, heap_docs, size, out_docs[q], out_scores[q])
                out_counts[q] = size


search_batch_serial = njit(cache=True)(_search_batch)
search_batch_parallel = njit(cache=True, parallel=True)(_search_batch)
