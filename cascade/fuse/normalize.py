"""Per-query score normalisation for fusion: none, min-max, z-score, rank.

Montague & Aslam, "Relevance score normalization for metasearch" (CIKM 2001) compare these
schemes; ``rank`` is the Borda-style ``1 - (rank - 1) / n``.
"""

from __future__ import annotations

import numpy as np

from cascade.core.candidates import Candidates
from cascade.core.params import ParamInfo

NORMS = ("none", "minmax", "zscore", "rank")
NORM = ParamInfo("norm", str, "minmax", "per-query score normalisation before fusing", choices=NORMS)


def _per_query(values: np.ndarray, offsets: np.ndarray, reduce: np.ufunc) -> np.ndarray:
    """A reduction of each query's slice, repeated over that slice (empty queries skipped)."""
    lengths = np.diff(offsets)
    starts = offsets[:-1][lengths > 0]
    reduced = reduce.reduceat(values, starts) if len(starts) else np.empty(0)
    return np.repeat(reduced, lengths[lengths > 0])


def normalize(cands: Candidates, method: str) -> np.ndarray:
    """Normalised scores (float64), aligned with ``cands.score``."""
    score = cands.score.astype(np.float64)
    if method == "none":
        return score
    if method == "rank":
        lengths = np.repeat(np.diff(cands.offsets), np.diff(cands.offsets))
        return 1.0 - (cands.ranks() - 1) / lengths
    if method == "minmax":
        lo = _per_query(score, cands.offsets, np.minimum)
        span = _per_query(score, cands.offsets, np.maximum) - lo
        return np.where(span > 0, (score - lo) / np.where(span > 0, span, 1), 1.0)
    if method == "zscore":
        lengths = np.repeat(np.diff(cands.offsets), np.diff(cands.offsets))
        mean = _per_query(score, cands.offsets, np.add) / lengths
        var = _per_query((score - mean) ** 2, cands.offsets, np.add) / lengths
        std = np.sqrt(var)
        return np.where(std > 0, (score - mean) / np.where(std > 0, std, 1), 0.0)
    raise ValueError(f"unknown normalisation {method!r}")


def per_query_min(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Each query's minimum of ``values`` (0 for a query without candidates)."""
    out = np.zeros(len(offsets) - 1)
    lengths = np.diff(offsets)
    nonempty = lengths > 0
    if nonempty.any():
        out[nonempty] = np.minimum.reduceat(values, offsets[:-1][nonempty])
    return out
