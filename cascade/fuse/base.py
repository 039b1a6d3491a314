"""What every fusion method shares: aligning inputs and summing per (query, document)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from cascade.errors import CascadeError
from cascade.pipeline.candidates import Candidates, common_space, sort_within_queries


@dataclass(frozen=True)
class FusionMethod:
    """A fusion method as the pipeline grammar sees it: a name, its parameters, a function."""

    name: str
    fuse: Callable[..., Candidates]
    defaults: dict[str, Any]
    choices: dict[str, tuple[str, ...]]

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        unknown = set(params) - set(self.defaults)
        if unknown:
            known = ", ".join(self.defaults) or "none"
            raise CascadeError(f"{self.name}: unknown parameter {sorted(unknown)[0]!r}; known: {known}")
        for key, allowed in self.choices.items():
            if key in params and params[key] not in allowed:
                raise CascadeError(f"{self.name}: {key} must be one of {', '.join(allowed)} (got {params[key]!r})")
        # keep only non-default settings so equal pipelines print and compare equal
        return {k: v for k, v in params.items() if v != self.defaults[k]}


def aligned(inputs: Sequence[Candidates]) -> tuple[Any, list[Candidates]]:
    if not inputs:
        raise CascadeError("fusion needs at least one input")
    ids = inputs[0].query_ids
    if any(c.query_ids != ids for c in inputs[1:]):
        raise CascadeError("fusion inputs must cover the same queries in the same order")
    return common_space(inputs)


def group_sum(inputs: Sequence[Candidates], contributions: Sequence[np.ndarray],
              combine: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> Candidates:
    """Sum each input's per-candidate contribution over identical (query, doc) pairs.

    ``combine(sums, counts)`` may turn the sums into final scores (CombMNZ multiplies by the
    number of inputs that retrieved the document).
    """
    space, inputs = aligned(inputs)
    qidx = np.concatenate([c.query_index() for c in inputs])
    doc = np.concatenate([c.doc for c in inputs]).astype(np.int64)
    value = np.concatenate(contributions).astype(np.float64)
    width = int(doc.max()) + 1 if len(doc) else 1
    pairs, inverse = np.unique(qidx * width + doc, return_inverse=True)
    sums = np.bincount(inverse, weights=value, minlength=len(pairs))
    if combine is not None:
        sums = combine(sums, np.bincount(inverse, minlength=len(pairs)))
    return sort_within_queries(inputs[0].query_ids, pairs // width, pairs % width, sums, space)
