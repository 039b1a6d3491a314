"""Top-k over impact postings across segments: the engine under BM25 (and learned sparse).

A query is a mapping from index terms to weights; a document's score is the sum of
``weight * impact`` over the query terms it contains. Per segment, one numba call answers a
whole batch of queries (block-max MaxScore, or the exhaustive check path); results from
several segments are merged by score.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from cascade.index.impacts import BLOCK, Impacts
from cascade.index.segment import Segment

QueryWeights = dict[str, float]

# query processing modes (the kernels' ``mode`` argument)
MAXSCORE, EXHAUSTIVE, RANGES = 0, 1, 2
MODES = {"maxscore": MAXSCORE, "exhaustive": EXHAUSTIVE, "ranges": RANGES}


def _kernels():  # type: ignore[no-untyped-def]
    from cascade.retrieve import maxscore

    return maxscore


def set_threads(threads: int) -> int:
    """Use ``threads`` worker threads (capped at the CPUs available); returns the number used."""
    import numba

    n = max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS, os.cpu_count() or 1))
    numba.set_num_threads(n)
    return n


_warm = False
ALL_ALLOWED = np.zeros(0, dtype=np.bool_)  # the kernels' "no restriction" mask


def as_mask(allowed: np.ndarray | None, n_docs: int) -> np.ndarray:
    """A segment's allowed-docs mask as the kernels take it: bool[n_docs], contiguous and
    writable (one array type, so one compiled specialisation); None -> every document."""
    if allowed is None:
        return ALL_ALLOWED
    mask = np.ascontiguousarray(allowed, dtype=np.bool_)
    if mask.shape != (n_docs,):
        raise ValueError(f"allowed-docs mask has shape {mask.shape}, expected ({n_docs},)")
    return mask if mask.flags.writeable else mask.copy()


def read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def kernels_cached() -> bool:
    """Whether numba's cache already holds the compiled kernels (False when unsure)."""
    try:
        kernel = _kernels().KERNELS[RANGES][0]
        return any(Path(kernel._cache._cache_path).glob("*_ranges_batch*.nbi"))
    except Exception:  # numba internals moved: just assume a compile may happen
        return False


def warm_up() -> None:
    """Load the default kernel (from numba's cache, compiling once if absent) so no query pays
    for it. Cheap after the first call in a process; other modes load when first used."""
    global _warm
    if _warm:
        return
    # index arrays are read-only (memory-mapped), and numba compiles read-only arrays
    # separately: warm up with the same kinds of arrays real searches pass
    indptr, docs = read_only(np.array([0, 1], dtype=np.int64)), read_only(np.zeros(1, np.int32))
    impacts = Impacts(*(read_only(a) for a in (np.ones(1, np.float32), np.array([0, 1], np.int64),
                                               np.ones(1, np.float32), np.zeros(1, np.int32),
                                               np.ones(1, np.float32))))
    q = (np.array([0, 1], np.int64), np.zeros(1, np.int64), np.ones(1))
    search_segment(indptr, docs, impacts, *q, 1, 1, mode=RANGES, threads=1)  # the default path
    search_segment(indptr, docs, impacts, *q, 1, 1, mode=RANGES, threads=1, allowed=np.ones(1, np.bool_))
    _warm = True


def search_segment(indptr: np.ndarray, docs: np.ndarray, impacts: Impacts, q_offsets: np.ndarray,
                   q_terms: np.ndarray, q_weights: np.ndarray, k: int, n_docs: int, *, mode: int = RANGES,
                   threads: int = 1, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(docs[Q, k], scores[Q, k], counts[Q]) for queries given as flat (term number, weight)
    arrays split by ``q_offsets``; row q holds query q's results in its first counts[q] places.
    ``allowed`` (bool[n_docs], None: all): only these documents can be returned."""
    kernels = _kernels()
    n = len(q_offsets) - 1
    k = max(1, min(k, n_docs))
    out_docs = np.empty((n, k), dtype=np.int32)
    out_scores = np.empty((n, k), dtype=np.float32)
    out_counts = np.zeros(n, dtype=np.int64)
    serial, parallel = kernels.KERNELS[mode]
    if threads > 1 and n > 1:
        workers, kernel = set_threads(threads), parallel
    else:
        workers, kernel = 1, serial
    kernel(indptr, docs, impacts.values, impacts.block_indptr, impacts.block_max, impacts.block_last,
           impacts.term_max, q_offsets, q_terms, q_weights, k, BLOCK, n_docs, workers,
           out_docs, out_scores, out_counts, as_mask(allowed, n_docs))
    return out_docs, out_scores, out_counts


def _flatten(queries: Sequence[QueryWeights], lookup: dict[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Query weights as flat arrays of this segment's term numbers, split by offsets."""
    terms: list[int] = []
    weights: list[float] = []
    offsets = np.zeros(len(queries) + 1, dtype=np.int64)
    for q, query in enumerate(queries):
        for term, weight in query.items():
            number = lookup.get(term)
            if number is not None:
                terms.append(number)
                weights.append(weight)
        offsets[q + 1] = len(terms)
    return offsets, np.array(terms, dtype=np.int64), np.array(weights, dtype=np.float64)


def search(segments: Sequence[Segment], impacts: Sequence[Impacts], bases: np.ndarray,
           queries: Sequence[QueryWeights], k: int, *, mode: int = RANGES, threads: int = 1,
           allowed: Sequence[np.ndarray | None] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top ``k`` over all segments as ragged arrays: (offsets[Q+1], global doc numbers, scores).
    ``allowed[i]``: segment i's allowed-docs mask (see ``Index.allowed_docs``)."""
    masks = list(allowed) if allowed is not None else [None] * len(segments)
    per_segment = [search_segment(seg.indptr, seg.docs, imp, *_flatten(queries, seg.term_numbers), k, seg.n_docs,
                                  mode=mode, threads=threads, allowed=mask)
                   for seg, imp, mask in zip(segments, impacts, masks)]
    if not per_segment:
        return np.zeros(len(queries) + 1, np.int64), np.empty(0, np.int32), np.empty(0, np.float32)
    if len(per_segment) == 1:
        docs, scores, counts = per_segment[0]
        keep = np.arange(docs.shape[1]) < counts[:, None]
        offsets = np.zeros(len(queries) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return offsets, docs[keep], scores[keep]
    all_docs, all_scores, counts = [], [], np.zeros(len(queries), dtype=np.int64)
    for q in range(len(queries)):
        nums = np.concatenate([d[q, : c[q]].astype(np.int64) + base for (d, _, c), base in zip(per_segment, bases)])
        sc = np.concatenate([s[q, : c[q]] for _, s, c in per_segment])
        order = np.lexsort((nums, -sc))[:k]
        all_docs.append(nums[order].astype(np.int32))
        all_scores.append(sc[order])
        counts[q] = len(order)
    offsets = np.zeros(len(queries) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    empty = [np.empty(0, np.int32)], [np.empty(0, np.float32)]
    return offsets, np.concatenate(all_docs or empty[0]), np.concatenate(all_scores or empty[1])
