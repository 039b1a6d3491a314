"""Adaptive-k: cut a ranked list at the largest gap between consecutive scores.

Instead of a fixed number of passages, keep those ranked above the biggest drop in relevance:
a query with three clearly relevant passages gets three, one with a flat score curve gets many.
The seed is "Re-ranking the Context for Multimodal Retrieval Augmented Generation" (Mortaheb,
Khojastepour, Chakradhar, Ulukus, 2025), which selects *up to k* entries by their relevance
scores instead of a fixed number; the largest-gap rule is the one of "Efficient Context
Selection for Long-Context QA: No Tuning, No Iteration, Just Adaptive-k" (Taguchi, Maekawa,
Bhutani, 2025). The gap is looked for between ranks ``min_k`` and ``max_k``; ``buffer`` keeps a
few passages more after the cut.

>>> largest_gap([9.0, 8.5, 8.2, 4.0, 3.9, 3.5])
(3, 2)
>>> largest_gap([9.0, 8.5, 8.2, 4.0, 3.9, 3.5], min_k=4, buffer=1)
(6, 4)

In a pipeline: ``cascade.parse("bm25 % 50 >> adaptive_k(max_k=20)", index=idx)``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from cascade.context.base import Choice, Selector, Texts
from cascade.core.errors import CascadeError
from cascade.core.nodes import Pipeline
from cascade.core.params import ParamInfo
from cascade.core.registry import Context, register_stage
from cascade.core.types import Query

PARAMS = (
    ParamInfo("min_k", int, 1, "keep at least this many passages (the gap is looked for after rank min_k)", min=1),
    ParamInfo("max_k", int, 20, "keep at most this many (the gap is looked for up to rank max_k)", min=1),
    ParamInfo("buffer", int, 0, "passages kept after the cut as well", min=0),
)


def largest_gap(scores: Sequence[float] | np.ndarray, min_k: int = 1, max_k: int | None = None,
                buffer: int = 0) -> tuple[int, int]:
    """``(k, at)``: keep the first ``k`` of ``scores`` (sorted best first); ``at`` is the 0-based
    position before the largest drop ``scores[at] - scores[at + 1]`` with ``min_k - 1 <= at <
    max_k - 1`` (the first such drop on ties), or -1 when the list is too short to have one."""
    s = np.asarray(scores, dtype=np.float64)
    hi = len(s) if max_k is None else min(len(s), max_k)
    if hi <= min_k:
        return min(len(s), max(hi, 0) + buffer), -1
    gaps = s[min_k - 1:hi - 1] - s[min_k:hi]
    at = min_k - 1 + int(np.argmax(gaps))
    return min(len(s), at + 1 + buffer), at


class AdaptiveK(Selector):
    """Keep the passages ranked above the largest score gap."""

    name = "adaptive_k"
    params = PARAMS

    def __init__(self, index: Any, **given: Any) -> None:
        super().__init__(index, **given)
        if self.values["max_k"] < self.values["min_k"]:
            raise CascadeError(f"adaptive_k: max_k ({self.values['max_k']}) must be at least min_k "
                               f"({self.values['min_k']})")

    def choose(self, query: Query, nums: np.ndarray, scores: np.ndarray, texts: Texts) -> Choice:
        v = self.values
        k, at = largest_gap(scores, v["min_k"], v["max_k"], v["buffer"])
        if at < 0:
            why = f"beyond max_k={v['max_k']}"
            detail: dict[str, Any] = {"k": k}
        else:
            gap = float(scores[at] - scores[at + 1])
            why = (f"below the largest score gap ({float(scores[at]):.4g} -> {float(scores[at + 1]):.4g} "
                   f"between ranks {at + 1} and {at + 2})")
            detail = {"k": k, "gap": round(gap, 6), "gap_after_rank": at + 1}
        return Choice(range(k), {p: why for p in range(k, len(scores))}, detail)


def _build(ctx: Context, **params: Any) -> Pipeline:
    return AdaptiveK(ctx.index("adaptive_k"), **params)


register_stage("adaptive_k", _build, params=PARAMS,
               help="keep the passages ranked above the largest gap between consecutive scores")
