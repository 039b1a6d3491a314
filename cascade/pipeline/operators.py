"""Operator nodes: Then (>>), Cutoff (%), Union (|), Fuse (+, rrf, ...), Weighted (w *)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from cascade.data.types import Query
from cascade.errors import CascadeError
from cascade.pipeline.base import ATOM, MUL, PLUS, THEN, UNION, Pipeline, format_call, format_value, wrap
from cascade.pipeline.candidates import Candidates, common_space, cut, sort_within_queries


class Then(Pipeline):
    """``a >> b >> c``: each stage receives the previous stage's candidates."""

    precedence = THEN

    def __init__(self, steps: Sequence[Pipeline]) -> None:
        if len(steps) < 2:
            raise ValueError("Then needs at least two steps")
        self.steps = tuple(steps)

    @classmethod
    def of(cls, *steps: Pipeline) -> Pipeline:
        flat: list[Pipeline] = []
        for s in steps:
            flat.extend(s.steps if isinstance(s, Then) else (s,))
        return cls(flat)

    def key(self) -> tuple[Any, ...]:
        return ("then",) + tuple(s.key() for s in self.steps)

    def children(self) -> Sequence[Pipeline]:
        return self.steps

    def execute(self, executor: Any, queries: Sequence[Query], candidates: Candidates | None) -> Candidates:
        out = executor.run(self.steps[0], queries, candidates)
        for step in self.steps[1:]:
            out = executor.run(step, queries, out)
        return out

    def __str__(self) -> str:
        return " >> ".join(wrap(s, THEN + 1) for s in self.steps)


class Cutoff(Pipeline):
    """``a % k``: the top ``k`` candidates of ``a`` for each query."""

    precedence = MUL

    def __init__(self, inner: Pipeline, k: int) -> None:
        self.inner, self.k = inner, int(k)

    def key(self) -> tuple[Any, ...]:
        return ("cutoff", self.k, self.inner.key())

    def children(self) -> Sequence[Pipeline]:
        return (self.inner,)

    def execute(self, executor: Any, queries: Sequence[Query], candidates: Candidates | None) -> Candidates:
        return cut(executor.run(self.inner, queries, candidates), self.k)

    def __str__(self) -> str:
        return f"{wrap(self.inner, MUL)} % {self.k}"


class Weighted(Pipeline):
    """``w * a``: a's scores times ``w``; inside a fusion, the weight of that input."""

    precedence = MUL

    def __init__(self, weight: float, inner: Pipeline) -> None:
        self.weight, self.inner = float(weight), inner

    def key(self) -> tuple[Any, ...]:
        return ("weight", self.weight, self.inner.key())

    def children(self) -> Sequence[Pipeline]:
        return (self.inner,)

    def execute(self, executor: Any, queries: Sequence[Query], candidates: Candidates | None) -> Candidates:
        out = executor.run(self.inner, queries, candidates)
        order = np.lexsort((out.doc, -out.score * self.weight, out.query_index()))
        return Candidates(out.query_ids, out.offsets, out.doc[order], (out.score * self.weight)[order].astype(np.float32),
                          out.space)

    def __str__(self) -> str:
        return f"{format_value(self.weight)} * {wrap(self.inner, ATOM)}"


def fusion_weight(p: Pipeline) -> tuple[float, Pipeline]:
    """A fusion input's weight and what to run for it. ``w * a`` weighs ``a``'s results by w, and
    so does ``(w * a) % k`` for w > 0: it is ``w * (a % k)``, which is what ``compile()`` makes of
    it, so a pipeline fuses the same compiled or not."""
    if isinstance(p, Weighted):
        return p.weight, p.inner
    if isinstance(p, Cutoff):
        weight, inner = fusion_weight(p.inner)
        if inner is not p.inner and weight > 0:
            return weight, Cutoff(inner, p.k)
    return 1.0, p


class Union(Pipeline):
    """``a | b``: every document any input retrieved, ordered by its best rank in any input.

    The score is ``1 / (best rank + i / n)`` for the i-th of n inputs; use it to pool
    candidates for a reranker, not as a ranking of its own.
    """

    precedence = UNION

    def __init__(self, inputs: Sequence[Pipeline]) -> None:
        self.inputs = tuple(inputs)

    @classmethod
    def of(cls, *inputs: Pipeline) -> Pipeline:
        flat: list[Pipeline] = []
        for p in inputs:
            flat.extend(p.inputs if isinstance(p, Union) else (p,))
        return cls(flat)

    def key(self) -> tuple[Any, ...]:
        return ("union",) + tuple(p.key() for p in self.inputs)

    def children(self) -> Sequence[Pipeline]:
        return self.inputs

    def execute(self, executor: Any, queries: Sequence[Query], candidates: Candidates | None) -> Candidates:
        outs = [executor.run(p, queries, candidates) for p in self.inputs]
        space, outs = common_space(outs)
        n_inputs = len(outs)
        qidx = np.concatenate([c.query_index() for c in outs])
        doc = np.concatenate([c.doc for c in outs]).astype(np.int64)
        # best rank first, then earlier input first: a sortable code per (rank, input)
        code = np.concatenate([c.ranks() * n_inputs + i for i, c in enumerate(outs)]).astype(np.float64)
        pair = qidx * (int(doc.max()) + 1 if len(doc) else 1) + doc
        order = np.lexsort((code, pair))
        first = np.ones(len(order), dtype=bool)
        first[1:] = pair[order][1:] != pair[order][:-1]
        keep = order[first]
        score = n_inputs / code[keep]  # 1 / (best rank + input / n_inputs)
        return sort_within_queries(outs[0].query_ids, qidx[keep], doc[keep], score, space)

    def __str__(self) -> str:
        return " | ".join(wrap(p, UNION + 1) for p in self.inputs)


class Fuse(Pipeline):
    """Score fusion of several inputs by a method from :mod:`cascade.fuse`.

    ``a + b`` is ``Fuse("sum", ...)``: CombSUM of raw scores, printed infix.
    """

    def __init__(self, method: str, inputs: Sequence[Pipeline], params: dict[str, Any] | None = None) -> None:
        from cascade.fuse import FUSION_METHODS

        if method not in FUSION_METHODS:
            raise CascadeError(f"unknown fusion {method!r}; available: {', '.join(sorted(FUSION_METHODS))}")
        if len(inputs) < 1:
            raise CascadeError(f"{method} needs at least one input")
        self.method = method
        self.inputs = tuple(inputs)
        self.params = FUSION_METHODS[method].check_params(params or {})

    @property
    def precedence(self) -> int:  # type: ignore[override]
        return PLUS if self.method == "sum" else ATOM

    @classmethod
    def plus(cls, a: Pipeline, b: Pipeline) -> Pipeline:
        flat: list[Pipeline] = []
        for p in (a, b):
            flat.extend(p.inputs if isinstance(p, Fuse) and p.method == "sum" else (p,))
        return cls("sum", flat)

    def key(self) -> tuple[Any, ...]:
        return ("fuse", self.method, tuple(sorted(self.params.items()))) + tuple(p.key() for p in self.inputs)

    def children(self) -> Sequence[Pipeline]:
        return self.inputs

    def execute(self, executor: Any, queries: Sequence[Query], candidates: Candidates | None) -> Candidates:
        from cascade.fuse import FUSION_METHODS

        weights, outs = [], []
        for p in self.inputs:
            weight, inner = fusion_weight(p)
            weights.append(weight)
            outs.append(executor.run(inner, queries, candidates))
        return FUSION_METHODS[self.method].fuse(outs, weights, **self.params)

    def __str__(self) -> str:
        if self.method == "sum":
            return " + ".join(wrap(p, PLUS + 1) for p in self.inputs)
        return format_call(self.method, [str(p) for p in self.inputs], self.params)
