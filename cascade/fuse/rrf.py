"""Reciprocal rank fusion.

Cormack, Clarke & Büttcher, "Reciprocal Rank Fusion outperforms Condorcet and individual
Rank Learning Methods" (SIGIR 2009): ``score(d) = sum_i w_i / (k + rank_i(d))``.

>>> import cascade
>>> from cascade.fuse.rrf import rrf
>>> from cascade.core.candidates import Candidates, IdTable
>>> t = IdTable(["a", "b", "c"])
>>> x = Candidates(["q"], [0, 2], t.add(["a", "b"]), [2.0, 1.0], t)
>>> y = Candidates(["q"], [0, 2], t.add(["b", "c"]), [5.0, 4.0], t)
>>> {d: round(s, 5) for d, s in rrf([x, y]).to_run()["q"].items()}
{'b': 0.03252, 'a': 0.01639, 'c': 0.01613}
"""

from __future__ import annotations

from typing import Sequence

from cascade.core.candidates import Candidates, group_sum
from cascade.core.nodes import FusionMethod
from cascade.core.params import ParamInfo
from cascade.fuse import register_fusion


def rrf(inputs: Sequence[Candidates], weights: Sequence[float] | None = None, k: int = 60) -> Candidates:
    """Fuse ranked lists by reciprocal rank, ``k`` damping the weight of top ranks."""
    weights = weights or [1.0] * len(inputs)
    return group_sum(inputs, [w / (k + c.ranks()) for w, c in zip(weights, inputs)])


METHOD = FusionMethod("rrf", rrf, params=(ParamInfo("k", int, 60, "damping: higher k flattens the weight of top ranks", min=0),),
                      help="reciprocal rank fusion of the inputs' ranks")
register_fusion(METHOD)
