"""Top-k over impact postings across segments: the engine under BM25 and learned sparse.

A query is a list of (term number, weight) pairs per segment; a document's score is the sum
of ``weight * impact`` over the query terms it contains, summed in float64 in the query's term
order and rounded to float32; results are ordered by score, then doc number. Per segment one
call answers a whole batch: the numba kernels (:mod:`cascade.retrieve.maxscore`: document-range
TAAT, block-max MaxScore, exhaustive), or :func:`search_segment_numpy`, the same sums in plain
numpy for a process that has not compiled the kernels; both give identical results. Segments'
results are then merged by score.

Which one runs is the caller's explicit choice (``compiled``); :func:`kernels_ready` says
whether the kernels can be had without compiling them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from cascade.index.impacts import BLOCK, Impacts

# query processing modes (the kernels' ``mode`` argument)
MAXSCORE, EXHAUSTIVE, RANGES = 0, 1, 2
MODES = {"maxscore": MAXSCORE, "exhaustive": EXHAUSTIVE, "ranges": RANGES}
ALL_ALLOWED = np.zeros(0, dtype=np.bool_)  # the kernels' "no restriction" mask


class Postings(NamedTuple):
    """What the engine reads of one segment: CSR postings and their impacts."""

    indptr: np.ndarray
    docs: np.ndarray
    impacts: Impacts
    n_docs: int


class SegmentQueries(NamedTuple):
    """A batch of queries as one segment's term numbers: query q is ``terms[offsets[q]:offsets[q+1]]``
    with ``weights``; ``allowed`` (bool[n_docs], None: all) the documents it may return.
    (Named tuples: made for every search, and cheaper to make than dataclasses.)"""

    offsets: np.ndarray
    terms: np.ndarray
    weights: np.ndarray
    allowed: np.ndarray | None = None


_KERNELS: Any = None  # cascade.retrieve.maxscore once imported (importing it loads numba)


def _kernels() -> Any:
    global _KERNELS
    if _KERNELS is None:
        from cascade.retrieve import maxscore

        _KERNELS = maxscore
    return _KERNELS


_ONE_QUERY_OFFSETS: dict[int, np.ndarray] = {}


def one_query_offsets(n_terms: int) -> np.ndarray:
    """``[0, n_terms]`` as the offsets of a batch of one query (shared: never write to it)."""
    found = _ONE_QUERY_OFFSETS.get(n_terms)
    if found is None:
        found = np.array([0, n_terms], dtype=np.int64)
        if n_terms <= 256:
            _ONE_QUERY_OFFSETS[n_terms] = found
    return found


_warm = False


def set_threads(threads: int) -> int:
    """Use ``threads`` worker threads (capped at the CPUs available); returns the number used."""
    import numba

    n = max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS, os.cpu_count() or 1))
    numba.set_num_threads(n)
    return n


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


KERNEL_INDEX = "maxscore._ranges_batch-*.nbi"  # numba's cache index file of the default kernel


def kernels_cached() -> bool:
    """Whether numba's on-disk cache holds the compiled default kernel, looked up without
    importing numba: in $NUMBA_CACHE_DIR when set, else beside the source (``__pycache__``) or in
    the user-wide cache numba falls back to."""
    if custom := os.environ.get("NUMBA_CACHE_DIR"):
        return any(Path(custom).rglob(KERNEL_INDEX))
    source = Path(__file__).with_name("maxscore.py")
    if any((source.parent / "__pycache__").glob(KERNEL_INDEX)):
        return True
    user_wide = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "numba"
    return user_wide.is_dir() and any(user_wide.rglob(KERNEL_INDEX))


_cached_seen: float | None = None  # when kernels_cached() last said no (it globs numba's cache dir)
RECHECK_SECONDS = 10.0


def kernels_ready() -> bool:
    """Whether the compiled kernels are loaded in this process or can be loaded from numba's
    cache without compiling (about 1 s, against about 20 s for a compile). A yes is final; a no
    is looked at again after RECHECK_SECONDS (another process may compile them meanwhile)."""
    global _cached_seen
    if _warm:
        return True
    now = time.monotonic()
    if _cached_seen is not None and now - _cached_seen < RECHECK_SECONDS:
        return False
    if kernels_cached():
        warm_up()
        return True
    _cached_seen = now
    return False


def warm_up() -> None:
    """Load the default kernel (from numba's cache, compiling once if absent) so no query pays
    for it. Cheap after the first call in a process; other modes load when first used."""
    global _warm
    if _warm:
        return
    # index arrays are read-only (memory-mapped), and numba compiles read-only arrays
    # separately: warm up with the same kinds of arrays real searches pass
    postings = Postings(read_only(np.array([0, 1], dtype=np.int64)), read_only(np.zeros(1, np.int32)),
                        Impacts(*(read_only(a) for a in (np.ones(1, np.float32), np.array([0, 1], np.int64),
                                                         np.ones(1, np.float32), np.zeros(1, np.int32),
                                                         np.ones(1, np.float32)))), 1)
    q = SegmentQueries(np.array([0, 1], np.int64), np.zeros(1, np.int64), np.ones(1))
    search_segment(postings, q, 1, mode=RANGES)  # the default path
    search_segment(postings, SegmentQueries(q.offsets, q.terms, q.weights, np.ones(1, np.bool_)), 1, mode=RANGES)
    _warm = True


def search_segment(seg: Postings, q: SegmentQueries, k: int, *, mode: int = RANGES,
                   threads: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compiled kernels: (docs[Q, k], scores[Q, k], counts[Q]); row q holds query q's results
    (segment-local doc numbers) in its first counts[q] places."""
    kernels = _kernels()
    n = len(q.offsets) - 1
    k = max(1, min(k, seg.n_docs))
    out_docs = np.empty((n, k), dtype=np.int32)
    out_scores = np.empty((n, k), dtype=np.float32)
    out_counts = np.zeros(n, dtype=np.int64)
    serial, parallel = kernels.KERNELS[mode]
    if threads > 1 and n > 1:
        workers, kernel = set_threads(threads), parallel
    else:
        workers, kernel = 1, serial
    imp = seg.impacts
    kernel(seg.indptr, seg.docs, imp.values, imp.block_indptr, imp.block_max, imp.block_last, imp.term_max,
           q.offsets, q.terms, q.weights, k, BLOCK, seg.n_docs, workers, out_docs, out_scores, out_counts,
           as_mask(q.allowed, seg.n_docs))
    return out_docs, out_scores, out_counts


def search_one(seg: Postings, q: SegmentQueries, k: int, *,
               mode: int = RANGES) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`search` for one query over one segment with the compiled kernels (one query runs
    on one thread, as there): the same (offsets, doc numbers, scores), with less done around
    the kernel call."""
    k = max(1, min(k, seg.n_docs))
    out_docs = np.empty((1, k), dtype=np.int32)
    out_scores = np.empty((1, k), dtype=np.float32)
    offsets = np.zeros(2, dtype=np.int64)  # the kernel writes the query's count into offsets[1]
    imp = seg.impacts
    _kernels().KERNELS[mode][0](seg.indptr, seg.docs, imp.values, imp.block_indptr, imp.block_max, imp.block_last,
                                imp.term_max, q.offsets, q.terms, q.weights, k, BLOCK, seg.n_docs, 1, out_docs,
                                out_scores, offsets[1:],
                                ALL_ALLOWED if q.allowed is None else as_mask(q.allowed, seg.n_docs))
    found = int(offsets[1])
    return offsets, out_docs[0, :found], out_scores[0, :found]


def search_segment_numpy(seg: Postings, q: SegmentQueries, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same results as :func:`search_segment`, bit for bit, in plain numpy (no kernels to
    compile or load): the same float64 sums in the same term order, rounded to float32."""
    n = len(q.offsets) - 1
    k = max(1, min(k, seg.n_docs))
    out_docs = np.zeros((n, k), dtype=np.int32)
    out_scores = np.zeros((n, k), dtype=np.float32)
    out_counts = np.zeros(n, dtype=np.int64)
    values = seg.impacts.values
    for row in range(n):
        acc = np.zeros(seg.n_docs)
        for i in range(int(q.offsets[row]), int(q.offsets[row + 1])):
            start, end = seg.indptr[q.terms[i]], seg.indptr[q.terms[i] + 1]
            acc[seg.docs[start:end]] += q.weights[i] * values[start:end].astype(np.float64)
        hit = acc > 0 if q.allowed is None else (acc > 0) & q.allowed
        found = np.flatnonzero(hit)
        scores = acc[found].astype(np.float32)
        order = np.lexsort((found, -scores))[:k]
        out_counts[row] = len(order)
        out_docs[row, :len(order)] = found[order]
        out_scores[row, :len(order)] = scores[order]
    return out_docs, out_scores, out_counts


def search(segments: Sequence[Postings], bases: np.ndarray, queries: Sequence[SegmentQueries], k: int, *,
           n_queries: int, compiled: bool, mode: int = RANGES,
           threads: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top ``k`` over all segments (``queries[i]``: the batch of ``n_queries`` in segment i's term
    numbers) as ragged arrays: (offsets[Q+1], global doc numbers int32, scores float32)."""
    parts = [search_segment(seg, q, k, mode=mode, threads=threads) if compiled else search_segment_numpy(seg, q, k)
             for seg, q in zip(segments, queries)]
    if len(parts) == 1:
        docs, scores, counts = parts[0]
        if n_queries == 1:  # one query: its row's first counts[0] entries
            found = int(counts[0])
            return np.array([0, found], dtype=np.int64), docs[0, :found], scores[0, :found]
        keep = np.arange(docs.shape[1]) < counts[:, None]
        return _offsets(counts), docs[keep], scores[keep]
    return merge_segments(parts, bases, n_queries, k)


def merge_segments(parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], bases: np.ndarray, n_queries: int,
                   k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-segment (docs[Q, k], scores[Q, k], counts[Q]) merged into each query's global top ``k``."""
    if not parts:
        return np.zeros(n_queries + 1, np.int64), np.empty(0, np.int32), np.empty(0, np.float32)
    qidx, docs, scores = [], [], []
    for (d, s, c), base in zip(parts, bases):
        keep = np.arange(d.shape[1]) < c[:, None]
        qidx.append(np.repeat(np.arange(n_queries), c))
        docs.append(d[keep].astype(np.int64) + int(base))
        scores.append(s[keep])
    q, doc, score = np.concatenate(qidx), np.concatenate(docs), np.concatenate(scores)
    order = np.lexsort((doc, -score, q))
    q, doc, score = q[order], doc[order], score[order]
    counts = np.bincount(q, minlength=n_queries)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    keep = np.arange(len(q)) - starts < k
    return _offsets(np.minimum(counts, k)), doc[keep].astype(np.int32), score[keep]


def _offsets(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out
