"""Per-posting impact scores and their block maxima: what fast top-k retrieval reads.

A segment's postings carry one float32 *impact* each. A query scores a document as
``sum over its terms t of w_t * impact(t, d)``: for BM25 the impact is the tf part of the
formula and ``w_t = qtf * idf(t)`` (:mod:`cascade.index.bm25_formula`); a learned-sparse
model writes its own impacts and uses its own query weights (see :class:`Impacts`). Postings are cut into blocks of
``BLOCK`` entries; each block's maximum impact bounds every score in it, which is what
dynamic pruning (MaxScore, block-max) skips with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cascade.index.bm25_formula import impacts_numpy

BLOCK = 64


@dataclass(frozen=True)
class Impacts:
    """Impacts of one segment plus the block structure built over them."""

    values: np.ndarray  # float32[P], aligned with the postings
    block_indptr: np.ndarray  # int64[T+1]: blocks of term t are [block_indptr[t], block_indptr[t+1])
    block_max: np.ndarray  # float32[B]: largest impact in each block
    block_last: np.ndarray  # int32[B]: last doc number in each block
    term_max: np.ndarray  # float32[T]: largest impact of each term

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.values, self.block_indptr, self.block_max, self.block_last, self.term_max))


def bm25_impacts(tfs: np.ndarray, doclens: np.ndarray, docs: np.ndarray, k1: float, b: float, avgdl: float,
                 *, compiled: bool) -> np.ndarray:
    """BM25's tf part for every posting (float32): with ``compiled`` the numba kernel (no
    temporaries; for big segments and processes that run kernels anyway), else numpy (no
    numba to load); both give the same values bit for bit."""
    if not compiled:
        return impacts_numpy(tfs, doclens, docs, k1, b, avgdl)
    from cascade.index.csr import bm25_impacts_kernel

    return bm25_impacts_kernel(tfs, doclens, docs, float(k1), float(b), float(avgdl or 1.0))


def build_blocks(indptr: np.ndarray, docs: np.ndarray, values: np.ndarray, block: int = BLOCK) -> Impacts:
    """Block maxima, block last-docs and term maxima for impacts laid out like the postings."""
    lengths = np.diff(indptr)
    n_blocks = (lengths + block - 1) // block
    block_indptr = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(n_blocks, out=block_indptr[1:])
    # start of every block in posting coordinates
    term_of_block = np.repeat(np.arange(len(lengths)), n_blocks)
    within = np.arange(block_indptr[-1]) - block_indptr[term_of_block]
    starts = indptr[term_of_block] + within * block
    ends = np.minimum(starts + block, indptr[term_of_block + 1])
    block_max = np.maximum.reduceat(values, starts) if len(starts) else np.empty(0, np.float32)
    block_last = docs[ends - 1] if len(ends) else np.empty(0, np.int32)
    term_max = np.zeros(len(lengths), dtype=np.float32)
    nonempty = n_blocks > 0
    if nonempty.any():
        term_max[nonempty] = np.maximum.reduceat(block_max, block_indptr[:-1][nonempty])
    arrays = (values.astype(np.float32, copy=False), block_indptr, block_max.astype(np.float32),
              block_last.astype(np.int32), term_max)
    for a in arrays:  # like the memory-mapped ones on disk, so the kernels see one array type
        a.flags.writeable = False
    return Impacts(*arrays)
