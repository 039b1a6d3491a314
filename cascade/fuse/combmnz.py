"""CombMNZ: CombSUM times the number of inputs that retrieved the document.

Fox & Shaw, "Combination of Multiple Searches" (TREC-2, 1994).

>>> from cascade.fuse.combmnz import combmnz
>>> from cascade.core.candidates import Candidates, IdTable
>>> t = IdTable(["a", "b"])
>>> x = Candidates(["q"], [0, 2], t.add(["a", "b"]), [2.0, 1.0], t)
>>> y = Candidates(["q"], [0, 1], t.add(["b"]), [1.0], t)
>>> combmnz([x, y], norm="none").to_run()["q"]
{'b': 4.0, 'a': 2.0}
"""

from __future__ import annotations

from typing import Sequence

from cascade.core.candidates import Candidates, group_sum
from cascade.core.nodes import FusionMethod
from cascade.fuse import register_fusion
from cascade.fuse.normalize import NORM, normalize


def combmnz(inputs: Sequence[Candidates], weights: Sequence[float] | None = None, norm: str = "minmax") -> Candidates:
    """Weighted, normalised score sum multiplied by how many inputs retrieved the document."""
    weights = weights or [1.0] * len(inputs)
    return group_sum(inputs, [w * normalize(c, norm) for w, c in zip(weights, inputs)],
                     combine=lambda sums, counts: sums * counts)


METHOD = FusionMethod("combmnz", combmnz, params=(NORM,), help="CombMNZ: CombSUM times the number of inputs that found the document")
register_fusion(METHOD)
