"""Top-k over impact postings across segments: the engine under BM25 (and learned sparse).

A query is a mapping from index terms to weights; a document's score is the sum of
``weight * impact`` over the query terms it contains. Per segment, one numba call answers a
whole batch of queries (block-max MaxScore, or the exhaustive check path); results from
several segments are merged by score.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from cascade.index.impacts import BLOCK, Impacts
from cascade.index.segment import Segment

QueryWeights = dict[str, float]


def _kernels():  # type: ignore[no-untyped-def]
    from cascade.retrieve import maxscore

    return maxscore


def set_threads(threads: int) -> int:
    """Use ``threads`` worker threads (capped at the CPUs available); returns the number used."""
    import numba

    n = max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS, os.cpu_count() or 1))
    numba.set_num_threads(n)
    return n


def warm_up() -> None:
    """Load the compiled kernels (from numba's cache) so no query pays for it."""
    empty_i64 = np.zeros(2, dtype=np.int64)
    impacts = Impacts(np.ones(1, np.float32), np.array([0, 1], np.int64), np.ones(1, np.float32),
                      np.zeros(1, np.int32), np.ones(1, np.float32))
    for exhaustive in (False, True):
        search_segment(empty_i64, np.zeros(1, np.int32), impacts, [(np.zeros(1, np.int64), np.ones(1))], 1, 1,
                       exhaustive=exhaustive, threads=1)


def search_segment(indptr: np.ndarray, docs: np.ndarray, impacts: Impacts,
                   queries: Sequence[tuple[np.ndarray, np.ndarray]], k: int, n_docs: int, *,
                   exhaustive: bool = False, threads: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(docs[Q, k], scores[Q, k], counts[Q]) for queries given as (term numbers, weights)."""
    kernels = _kernels()
    n = len(queries)
    q_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum([len(t) for t, _ in queries], out=q_offsets[1:])
    q_terms = np.concatenate([t for t, _ in queries]).astype(np.int64) if n else np.empty(0, np.int64)
    q_weights = np.concatenate([w for _, w in queries]).astype(np.float64) if n else np.empty(0)
    k = max(1, min(k, n_docs))
    out_docs = np.empty((n, k), dtype=np.int32)
    out_scores = np.empty((n, k), dtype=np.float32)
    out_counts = np.zeros(n, dtype=np.int64)
    if threads > 1 and n > 1:
        workers = set_threads(threads)
        kernel = kernels.search_batch_parallel
    else:
        workers, kernel = 1, kernels.search_batch_serial
    kernel(indptr, docs, impacts.values, impacts.block_indptr, impacts.block_max, impacts.block_last,
           impacts.term_max, q_offsets, q_terms, q_weights, k, BLOCK, n_docs, exhaustive, workers,
           out_docs, out_scores, out_counts)
    return out_docs, out_scores, out_counts


def search(segments: Sequence[Segment], impacts: Sequence[Impacts], bases: np.ndarray,
           queries: Sequence[QueryWeights], k: int, *, exhaustive: bool = False,
           threads: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """Global (doc numbers, scores) per query, best first, over all segments."""
    per_segment = []
    for seg, imp in zip(segments, impacts):
        lookup = seg.term_numbers
        arrays = []
        for weights in queries:
            ids = [lookup[t] for t in weights if t in lookup]
            ws = [w for t, w in weights.items() if t in lookup]
            arrays.append((np.array(ids, dtype=np.int64), np.array(ws, dtype=np.float64)))
        per_segment.append(search_segment(seg.indptr, seg.docs, imp, arrays, k, seg.n_docs,
                                          exhaustive=exhaustive, threads=threads))
    results = []
    for q in range(len(queries)):
        if len(per_segment) == 1:
            d, s, c = per_segment[0]
            results.append((d[q, : c[q]].copy(), s[q, : c[q]].copy()))
            continue
        nums = np.concatenate([d[q, : c[q]].astype(np.int64) + base for (d, _, c), base in zip(per_segment, bases)])
        scores = np.concatenate([s[q, : c[q]] for _, s, c in per_segment])
        order = np.lexsort((nums, -scores))[:k]
        results.append((nums[order].astype(np.int32), scores[order]))
    return results
