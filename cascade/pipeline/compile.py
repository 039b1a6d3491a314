"""Rewrite a pipeline into an equivalent, cheaper one.

Rules (applied bottom-up):

- ``r % k`` on a retriever that knows its depth becomes ``r`` asked for ``min(k, depth)``
  results: top-100 runs top-100, not top-1000 and cut.
- ``(a % j) % k`` -> ``a % min(j, k)``; ``(a >> b) % k`` -> ``a >> (b % k)``;
  ``(w * a) % k`` -> ``w * (a % k)`` for w > 0.
- ``a >> b`` where ``b`` reads only its top-n input candidates (``b.input_depth``) ->
  ``(a % n) >> b``, which the first rule then pushes into ``a``.
- ``a >> b`` where ``a.fuse_next(b)`` offers one stage doing both -> that stage.
"""

from __future__ import annotations

from cascade.pipeline.base import Pipeline
from cascade.pipeline.operators import Cutoff, Fuse, Then, Union, Weighted


def compile_pipeline(node: Pipeline) -> Pipeline:
    if isinstance(node, Cutoff):
        return _cutoff(compile_pipeline(node.inner), node.k)
    if isinstance(node, Then):
        return _then([compile_pipeline(s) for s in node.steps])
    if isinstance(node, Union):
        return Union([compile_pipeline(p) for p in node.inputs])
    if isinstance(node, Fuse):
        return Fuse(node.method, [compile_pipeline(p) for p in node.inputs], node.params)
    if isinstance(node, Weighted):
        return Weighted(node.weight, compile_pipeline(node.inner))
    return node


def _cutoff(inner: Pipeline, k: int) -> Pipeline:
    if inner.depth is not None:
        return inner.with_depth(min(k, inner.depth))
    if isinstance(inner, Cutoff):
        return _cutoff(inner.inner, min(k, inner.k))
    if isinstance(inner, Then):
        return _then(list(inner.steps[:-1]) + [_cutoff(inner.steps[-1], k)])
    if isinstance(inner, Weighted) and inner.weight > 0:
        return Weighted(inner.weight, _cutoff(inner.inner, k))
    return Cutoff(inner, k)


def _then(steps: list[Pipeline]) -> Pipeline:
    out: list[Pipeline] = [steps[0]]
    for step in steps[1:]:
        if step.input_depth is not None:
            out[-1] = _cutoff(out[-1], step.input_depth)
        fused = out[-1].fuse_next(step)
        if fused is not None:
            out[-1] = fused
        else:
            out.append(step)
    return out[0] if len(out) == 1 else Then(out)
