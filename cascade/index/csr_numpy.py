"""CSR postings for small segments in plain numpy, so a small add in a fresh process does not
pay for loading numba (about 0.5-0.9 s); same arrays as ``csr.csr_from_pairs``."""

from __future__ import annotations

import numpy as np


def csr_from_pairs_numpy(term, doc, tf, remap, n_terms):  # type: ignore[no-untyped-def]
    """The same arrays as ``cascade.index.csr.csr_from_pairs`` with a stable numpy sort (for small segments,
    in a process that has not loaded numba)."""
    mapped = remap[term]
    order = np.argsort(mapped, kind="stable")
    indptr = np.zeros(n_terms + 1, dtype=np.int64)
    np.cumsum(np.bincount(mapped, minlength=n_terms), out=indptr[1:])
    return indptr, doc[order].astype(np.int32), tf[order].astype(np.int32)
