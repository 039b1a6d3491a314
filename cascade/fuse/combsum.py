"""CombSUM: the sum of each input's (normalised, weighted) scores.

Fox & Shaw, "Combination of Multiple Searches" (TREC-2, 1994). ``a + b`` in a pipeline is
CombSUM of raw scores; ``combsum(a, b, norm=minmax)`` normalises each list per query first.

>>> from cascade.fuse.combsum import combsum
>>> from cascade.core.candidates import Candidates, IdTable
>>> t = IdTable(["a", "b"])
>>> x = Candidates(["q"], [0, 2], t.add(["a", "b"]), [2.0, 1.0], t)
>>> combsum([x, x], norm="none").to_run()["q"]
{'a': 4.0, 'b': 2.0}
"""

from __future__ import annotations

from typing import Sequence

from cascade.core.candidates import Candidates, group_sum
from cascade.core.nodes import FusionMethod
from cascade.fuse import register_fusion
from cascade.fuse.normalize import NORM, normalize


def combsum(inputs: Sequence[Candidates], weights: Sequence[float] | None = None, norm: str = "minmax") -> Candidates:
    """Sum of weighted, normalised scores; a document missing from an input adds 0."""
    weights = weights or [1.0] * len(inputs)
    return group_sum(inputs, [w * normalize(c, norm) for w, c in zip(weights, inputs)])


METHOD = FusionMethod("combsum", combsum, params=(NORM,), help="CombSUM: sum of the inputs' normalised, weighted scores")
register_fusion(METHOD)

