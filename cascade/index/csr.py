"""Build-time kernels: postings in CSR order by counting sort, BM25 impacts in one pass.

Both work in place of numpy expressions whose temporaries (an int64 argsort over every
posting, float copies of whole columns) set the peak memory of an index build.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from cascade.index import bm25_formula

_length_norm = njit(cache=True)(bm25_formula.length_norm)
_saturation = njit(cache=True)(bm25_formula.saturation)


@njit(cache=True)
def csr_from_pairs(term, doc, tf, remap, n_terms):  # type: ignore[no-untyped-def]
    """(indptr, docs, tfs) grouped by remapped term; pairs arrive in doc order, so docs stay
    ascending within each term (a stable counting sort)."""
    n = len(term)
    indptr = np.zeros(n_terms + 1, dtype=np.int64)
    for i in range(n):
        indptr[remap[term[i]] + 1] += 1
    for t in range(n_terms):
        indptr[t + 1] += indptr[t]
    fill = indptr[:-1].copy()
    out_docs = np.empty(n, dtype=np.int32)
    out_tfs = np.empty(n, dtype=np.int32)
    for i in range(n):
        t = remap[term[i]]
        j = fill[t]
        out_docs[j] = doc[i]
        out_tfs[j] = tf[i]
        fill[t] = j + 1
    return indptr, out_docs, out_tfs


@njit(cache=True)
def bm25_impacts_kernel(tfs, doclens, docs, k1, b, avgdl):  # type: ignore[no-untyped-def]
    """float32 BM25 impact per posting (:mod:`cascade.index.bm25_formula`), without temporaries."""
    norm = np.empty(len(doclens), dtype=np.float32)
    for d in range(len(doclens)):
        norm[d] = np.float32(_length_norm(k1, b, np.float64(doclens[d]), avgdl))
    out = np.empty(len(tfs), dtype=np.float32)
    for p in range(len(tfs)):
        out[p] = _saturation(np.float32(tfs[p]), norm[docs[p]])
    return out

