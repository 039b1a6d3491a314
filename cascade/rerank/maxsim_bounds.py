"""Upper bounds on MaxSim from a low-rank projection of the token vectors, for rank-safe pruning.

For an orthonormal basis ``P`` [d, r] (here: the top principal directions of a segment's token
vectors), every token vector splits as ``v = P P^T v + v_perp``, and its stored projection
``a = f16(P^T v)`` differs from ``P^T v`` by a rounding error ``e``. For a query token ``q``:

    q . v = (P^T q) . a + (P^T q) . e + q_perp . v_perp
          <= (P^T q) . a + |P^T q| |e| + |q_perp| |v_perp|        (Cauchy-Schwarz, twice)

so ``sum_i max_j`` of the right-hand side bounds a document's MaxSim from above at a cost of
r/d of exact scoring. The norms |e| and |v_perp| are computed in float64 when the bounds are
built and stored rounded up. ``BUILDER`` is registered for kind ``maxsim-bounds``: new and
merged segments get their bounds in the commit that writes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cascade.index import representations as reps
from cascade.index.builders import BuildContext, RepresentationBuilder

if TYPE_CHECKING:
    from cascade.index.index import Index
    from cascade.index.segment import Segment

SAMPLE = 50_000  # token vectors used to find a segment's principal directions
MARGIN = 1e-4  # per query token, covers float32 rounding in both the bound and the exact score


def principal_basis(vectors: np.ndarray, rank: int, seed: int = 0) -> np.ndarray:
    """An orthonormal [d, rank] basis of the top principal (uncentred) directions of a sample."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(vectors), size=min(SAMPLE, len(vectors)), replace=False) if len(vectors) else []
    sample = np.asarray(vectors[np.sort(rows)], dtype=np.float64) if len(vectors) else np.eye(vectors.shape[1])
    _, _, vt = np.linalg.svd(sample, full_matrices=False)
    basis = vt[:rank].T
    if basis.shape[1] < rank:  # fewer samples than the rank: complete with any orthonormal directions
        q, _ = np.linalg.qr(np.concatenate([basis, np.eye(len(basis))], axis=1))
        basis = q[:, :rank]
    return basis.astype(np.float32)


def build_bounds(tokens: np.ndarray, rank: int, chunk: int = 65536) -> dict[str, np.ndarray]:
    """The stored parts for one segment: basis, f16 projections and the two slack norms."""
    basis = principal_basis(tokens, rank)
    basis64 = basis.astype(np.float64)
    proj = np.empty((len(tokens), rank), dtype=np.float16)
    round_err = np.empty(len(tokens), dtype=np.float32)
    perp = np.empty(len(tokens), dtype=np.float32)
    for start in range(0, len(tokens), chunk):
        v = np.asarray(tokens[start:start + chunk], dtype=np.float64)
        exact = v @ basis64
        stored = exact.astype(np.float16)
        proj[start:start + len(v)] = stored
        round_err[start:start + len(v)] = _round_up(np.linalg.norm(exact - stored.astype(np.float64), axis=1))
        perp[start:start + len(v)] = _round_up(np.linalg.norm(v - exact @ basis64.T, axis=1))
    return {"basis": basis, "proj": proj, "round_err": round_err, "perp": perp}


def _build(seg: "Segment", name: str, spec: dict[str, Any], context: BuildContext) -> dict[str, np.ndarray]:
    """The registered builder of kind ``maxsim-bounds``: bounds over the token vectors of ``spec["of"]``."""
    return build_bounds(reps.load(seg, str(spec["of"]), "tok_vectors"), int(spec["rank"]))


BUILDER = RepresentationBuilder(_build)  # entry point cascade.representations:maxsim-bounds


def _round_up(x: np.ndarray) -> np.ndarray:
    return (x * (1 + 1e-6) + 1e-7).astype(np.float32)


@dataclass
class SegmentBounds:
    basis: np.ndarray
    proj: np.ndarray
    round_err: np.ndarray
    perp: np.ndarray


class TokenBounds:
    """Per-segment bound data for representation ``name`` (built and stored on first use)."""

    def __init__(self, segments: list[SegmentBounds]) -> None:
        self.segments = segments

    @classmethod
    def of(cls, index: "Index", name: str, rank: int, *, build: bool = True) -> "TokenBounds | None":
        """The bounds of ``index``'s segments, built from representation ``name`` and stored
        first when no commit has them (with ``build=False``: None then)."""
        bound_name = f"{name}_bounds{rank}"
        spec = {"kind": "maxsim-bounds", "of": name, "rank": rank}

        def encode(latest: "Index") -> None:
            reps.add_representation(latest, bound_name, spec, reporter=reps.silent)  # by BUILDER

        usable = lambda found: found == spec  # noqa: E731
        found = reps.ensure(index, bound_name, usable, encode) if build else reps.stored(index, bound_name, usable)
        if found is None:
            return None
        return cls([SegmentBounds(*(reps.load(seg, bound_name, part) for part in ("basis", "proj", "round_err", "perp")))
                    for seg in found[0]])

    def upper_bounds(self, q: np.ndarray, where: list[tuple[int, int, int]]) -> np.ndarray:
        """An upper bound of the MaxSim of query tokens ``q`` with each (segment, start, end) document."""
        out = np.empty(len(where), dtype=np.float64)
        by_segment: dict[int, list[int]] = {}
        for i, (s, _, _) in enumerate(where):
            by_segment.setdefault(s, []).append(i)
        for s, items in by_segment.items():
            out[items] = self._segment_bounds(self.segments[s], q, [where[i] for i in items])
        return out

    @staticmethod
    def _segment_bounds(seg: SegmentBounds, q: np.ndarray, where: list[tuple[int, int, int]]) -> np.ndarray:
        basis = np.asarray(seg.basis)
        qp = q @ basis  # [m, r]
        q64 = q.astype(np.float64)
        q_perp = np.linalg.norm(q64 - (q64 @ basis.astype(np.float64)) @ basis.T.astype(np.float64), axis=1)
        q_par = np.linalg.norm(qp.astype(np.float64), axis=1)
        lengths = [e - b for _, b, e in where]
        offsets = np.zeros(len(where) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        total = int(offsets[-1])
        proj = np.empty((total, basis.shape[1]), dtype=np.float32)
        round_err = np.empty(total, dtype=np.float32)
        perp = np.empty(total, dtype=np.float32)
        for (_, b, e), o in zip(where, offsets[:-1].tolist()):
            proj[o:o + e - b] = seg.proj[b:e]
            round_err[o:o + e - b] = seg.round_err[b:e]
            perp[o:o + e - b] = seg.perp[b:e]
        sims = qp @ proj.T
        sims += np.outer(q_par.astype(np.float32), round_err)
        sims += np.outer((q_perp * (1 + 1e-6)).astype(np.float32), perp)
        bounds = np.zeros(len(where))
        nonempty = offsets[1:] > offsets[:-1]
        if total:
            best = np.maximum.reduceat(sims, offsets[:-1][nonempty], axis=1)
            bounds[nonempty] = best.sum(axis=0, dtype=np.float64) + MARGIN * len(q)
        return bounds
