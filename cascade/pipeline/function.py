"""Turn a plain function into a pipeline stage.

>>> import numpy as np
>>> from cascade.pipeline.function import stage
>>> @stage(name="halve")
... def halve(queries, candidates):
...     candidates.score = candidates.score / 2
...     return candidates
>>> str(halve)
'halve'
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Sequence

from cascade.core.candidates import Candidates
from cascade.core.errors import CascadeError
from cascade.core.nodes import Pipeline, Runner, format_call
from cascade.core.registry import register_stage
from cascade.core.types import Query

StageFn = Callable[[Sequence[Query], "Candidates | None"], Candidates]


class FunctionStage(Pipeline):
    """A stage made from ``fn(queries, candidates) -> Candidates``.

    ``params`` are keyword arguments passed to ``fn`` and become part of the stage's key;
    ``version`` lets you change the key when the function's behaviour changes.
    """

    def __init__(self, fn: Callable[..., Candidates], name: str | None = None, params: dict[str, Any] | None = None,
                 version: str = "") -> None:
        self.fn = fn
        self.name = name or fn.__name__
        self.params = dict(params or {})
        self.version = version

    def key(self) -> tuple[Any, ...]:
        return ("fn", self.name, self.version, tuple(sorted(self.params.items())))

    def execute(self, runner: Runner, queries: Sequence[Query], candidates: Candidates | None) -> Candidates:
        if candidates is not None:  # a copy: the input may be shared (memoised) with other pipelines
            candidates = replace(candidates, offsets=candidates.offsets.copy(), doc=candidates.doc.copy(),
                                 score=candidates.score.copy(), seconds=dict(candidates.seconds))
        out = self.fn(queries, candidates, **self.params)
        if not isinstance(out, Candidates):
            raise CascadeError(f"stage {self.name} returned {type(out).__name__}, not Candidates")
        return out

    def with_params(self, **params: Any) -> "FunctionStage":
        return FunctionStage(self.fn, self.name, {**self.params, **params}, self.version)

    def __str__(self) -> str:
        return format_call(self.name, (), self.params)


def stage(fn: Callable[..., Candidates] | None = None, *, name: str | None = None, version: str = "",
          register: bool = True) -> Any:
    """Decorator: make ``fn`` a stage and (by default) register its name for pipeline strings."""

    def make(f: Callable[..., Candidates]) -> FunctionStage:
        st = FunctionStage(f, name=name, version=version)
        if register:
            register_stage(st.name, lambda ctx, **params: st.with_params(**params), params=None,
                           help=(f.__doc__ or "").strip().split("\n")[0], replace=True)
        return st

    return make(fn) if fn is not None else make
