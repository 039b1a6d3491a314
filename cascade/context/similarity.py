"""Similarity between the passages of one query's candidates, for redundancy-aware selection.

Two sources: the dense vectors a bi-encoder representation stored in the index (cosine: they
are unit vectors), read without encoding anything; or, where no such representation is stored,
the overlap of the passages' index terms (Jaccard: shared terms over all terms, after the
index's own analysis, so stemming and stopwords apply).

>>> term_similarity([{"solar", "power"}, {"solar", "power", "plant"}, {"wind"}]).round(2).tolist()
[[1.0, 0.67, 0.0], [0.67, 1.0, 0.0], [0.0, 0.0, 1.0]]
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from cascade.core.errors import CascadeError
from cascade.index import representations as reps
from cascade.index.index import Index

DENSE_KIND = "biencoder"


def dense_name(index: Index, rep: str | None) -> str | None:
    """The stored bi-encoder representation to read (``rep``, else the first the index lists),
    or None when the index has none."""
    specs: dict[str, dict[str, Any]] = index.manifest.representations
    if rep:
        if specs.get(rep, {}).get("kind") != DENSE_KIND:
            have = ", ".join(n for n, s in specs.items() if s.get("kind") == DENSE_KIND) or "none"
            raise CascadeError(f"{index.path} has no stored dense representation {rep!r} (it has: {have}); "
                               f"store one with `cascade encode {index.path} --model minilm`")
        return rep
    return next((name for name, spec in specs.items() if spec.get("kind") == DENSE_KIND), None)


def dense_rows(index: Index, name: str, nums: np.ndarray) -> np.ndarray | None:
    """The stored dense vectors of doc numbers ``nums`` (float32 [n, d]), or None when some
    segment lacks them (nothing is encoded here)."""
    found = reps.stored(index, name, lambda spec: spec.get("kind") == DENSE_KIND)
    if found is None:
        return None
    segments = found[0]
    bases = index.bases
    segs = np.searchsorted(bases, nums, side="right") - 1
    rows: np.ndarray | None = None
    for s in np.unique(segs):
        if not reps.has_part(segments[s], name, "dense"):
            return None
        part = reps.load(segments[s], name, "dense")
        if rows is None:
            rows = np.empty((len(nums), part.shape[1]), dtype=np.float32)
        mask = segs == s
        rows[mask] = part[nums[mask] - bases[s]]
    return rows if rows is not None else np.empty((0, 0), np.float32)


def dense_similarity(vectors: np.ndarray) -> np.ndarray:
    """Cosine similarity of every pair of rows (rows normalised here, so any vectors do)."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    v = v / np.where(norms > 0, norms, 1.0)
    return v @ v.T


def term_similarity(term_sets: Sequence[set[str]]) -> np.ndarray:
    """Jaccard overlap of every pair of term sets (1 on the diagonal, 0 for two empty sets):
    intersections from one sparse product of the sets' 0/1 incidence matrix."""
    from scipy import sparse  # only when term similarity is used (pipeline strings load this module)

    n = len(term_sets)
    vocab: dict[str, int] = {}
    rows, cols = [], []
    for i, terms in enumerate(term_sets):
        for t in terms:
            rows.append(i)
            cols.append(vocab.setdefault(t, len(vocab)))
    incidence = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, max(len(vocab), 1)))
    inter = np.asarray((incidence @ incidence.T).todense(), dtype=np.float64)
    sizes = np.diag(inter).copy()
    union = sizes[:, None] + sizes[None, :] - inter
    out = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    np.fill_diagonal(out, 1.0)
    return out
