"""Weighted linear combination (interpolation) of normalised scores.

Vogt & Cottrell, "Fusion via a linear combination of scores" (Information Retrieval, 1999):
``score(d) = sum_i w_i * norm_i(d)``; weights come from ``w * a`` in the pipeline, e.g.
``linear(0.3 * bm25, 0.7 * dense, norm=zscore)``. Unlike CombSUM, a document missing from an
input gets that input's lowest normalised score for the query rather than 0, so z-scores
(which go negative) are not rewarded for absence.

>>> from cascade.fuse.linear import linear
>>> from cascade.core.candidates import Candidates, IdTable
>>> t = IdTable(["a", "b", "c"])
>>> x = Candidates(["q"], [0, 2], t.add(["a", "b"]), [3.0, 1.0], t)
>>> y = Candidates(["q"], [0, 2], t.add(["b", "c"]), [2.0, 1.0], t)
>>> linear([x, y], [0.5, 0.5], norm="minmax").to_run()["q"]
{'a': 0.5, 'b': 0.5, 'c': 0.0}
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from cascade.core.candidates import Candidates, aligned, group_sum
from cascade.core.nodes import FusionMethod
from cascade.fuse import register_fusion
from cascade.fuse.normalize import NORM, normalize, per_query_min


def linear(inputs: Sequence[Candidates], weights: Sequence[float] | None = None, norm: str = "minmax") -> Candidates:
    """Weighted sum of normalised scores, imputing each input's per-query minimum when absent."""
    weights = weights or [1.0] * len(inputs)
    _, inputs = aligned(inputs)
    normed = [normalize(c, norm) for c in inputs]
    floors = [per_query_min(n, c.offsets) for n, c in zip(normed, inputs)]
    # sum(w * (norm - floor)) over present inputs, plus sum(w * floor) over all inputs
    contributions = [w * (n - np.repeat(f, np.diff(c.offsets))) for w, n, f, c in zip(weights, normed, floors, inputs)]
    fused = group_sum(inputs, contributions)
    base = sum(w * f for w, f in zip(weights, floors))
    score = fused.score.astype(np.float64) + np.repeat(base, np.diff(fused.offsets))
    order = np.lexsort((fused.doc, -score, fused.query_index()))
    fused.doc, fused.score = fused.doc[order], score[order].astype(np.float32)
    return fused


METHOD = FusionMethod("linear", linear, params=(NORM,), help="weighted linear combination of normalised scores, the per-query minimum imputed when missing")
register_fusion(METHOD)
