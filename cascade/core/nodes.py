"""Pipelines: the node every stage extends, the operator nodes, and how each compiles.

    a >> b      then: b reranks what a retrieved
    a % k       cutoff: keep a's top k per query
    a | b       union of candidates
    a + b       CombSUM of raw scores (``w * a`` weights an input)
    rrf(a, b)   reciprocal rank fusion (also combsum, combmnz, linear: see cascade.fuse)

Precedence follows Python's: ``|`` < ``>>`` < ``+`` < ``*``, ``%``; so the string and the
Python expression mean the same thing. Every node has a ``key()``: equal keys, equal output.

The stage contract (:class:`Stage`) is what the executor and the compiler rely on:

- ``key()``: a hashable tuple naming the node and everything that changes its output
  (parameters, model, the index snapshot it reads); equality, memoising and the stage
  cache all use it.
- ``execute(runner, queries, candidates)``: the node's output for a batch of queries; a
  composite node runs its children through ``runner.run(child, queries, candidates)`` so
  shared parts run once. First stages ignore ``candidates``; rerankers rescore only those.
- ``prepare()``: do the one-off work a first search would otherwise do (load a model or the
  compiled kernels, encode a collection); the executor calls it before it starts a node's
  clock, and takes it out of the clock of any node that ran this one, so latency is query
  work only (it is reported apart).
- ``compile()``: an equivalent, cheaper node. ``limit(k)``: this node keeping at most ``k``
  results per query, as cheaply as it can (a retriever asks itself for k results; the
  default wraps it in a cutoff). ``Cutoff.compile`` is ``inner.compile().limit(k)``.
- ``prefetch(queries)``: start query-side work that runs without the GIL (encoding the
  queries) on a background thread, so it overlaps what the executor does first; the executor
  calls it, before running a pipeline, on each first stage whose output is neither memoised
  nor stored (``input_children`` are the children that receive the node's own input). The
  stage that uses the work waits for it and still reports its cost (default: nothing).
- Optional, declared on the class: ``input_depth`` (a stage that reads only its top-n input
  candidates: ``a >> b`` compiles to ``a.limit(n) >> b``), ``fuse_next(b)`` (one stage doing
  ``self >> b``, which ``compile`` then uses instead), ``cacheable`` (outputs may be stored on
  disk; such a stage also has ``space``, the doc-id space of what it returns) and ``params``
  (declared parameters, :class:`~cascade.core.params.ParamInfo`).

>>> from cascade.pipeline.function import stage
>>> @stage
... def first(queries, candidates): ...
>>> @stage
... def second(queries, candidates): ...
>>> str(first % 100 >> second % 10)
'first % 100 >> second % 10'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Protocol, Sequence, runtime_checkable

import numpy as np

from cascade.core.candidates import Candidates, common_space, cut, group_sum, sort_within_queries
from cascade.core.errors import CascadeError
from cascade.core.executor import Executor
from cascade.core.params import ParamInfo, check_params, non_defaults
from cascade.core.types import Query

# printing precedence: higher binds tighter
UNION, THEN, PLUS, MUL, ATOM = 1, 2, 3, 4, 5


class Runner(Protocol):
    """What a composite node runs its children through (an :class:`Executor`)."""

    def run(self, node: "Pipeline", queries: Sequence[Query], candidates: Candidates | None = None) -> Candidates: ...


@runtime_checkable
class Stage(Protocol):
    """The contract every pipeline node keeps (see the module docstring)."""

    def key(self) -> tuple[Any, ...]: ...

    def execute(self, runner: Runner, queries: Sequence[Query], candidates: Candidates | None) -> Candidates: ...

    def compile(self) -> "Stage": ...

    def limit(self, k: int) -> "Stage": ...

    def prepare(self) -> None: ...


class Pipeline:
    """Base of every stage and operator node: the operators, identity, compile and running."""

    precedence: ClassVar[int] = ATOM
    name: str = "stage"
    params: ClassVar[tuple[ParamInfo, ...]] = ()  # declared parameters (what `cascade stages` lists)
    cacheable: ClassVar[bool] = False  # outputs may be stored on disk; such a stage has `space`
    input_depth: int | None = None  # a reranker that reads only its top-n input candidates

    # -- identity -------------------------------------------------------------------------

    def key(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pipeline) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())

    def children(self) -> Sequence["Pipeline"]:
        return ()

    def input_children(self) -> Sequence["Pipeline"]:
        """The children that run on this node's own input candidates (all, but for ``a >> b``)."""
        return self.children()

    # -- running --------------------------------------------------------------------------

    def execute(self, runner: Runner, queries: Sequence[Query], candidates: Candidates | None) -> Candidates:
        """This node's output; composite nodes run their children through ``runner``."""
        raise NotImplementedError

    def prepare(self) -> None:
        """One-off work a first search would do (see the module docstring). Nodes that run other
        nodes do nothing here: the executor prepares each node it runs."""

    def prefetch(self, queries: Sequence[Query]) -> None:
        """Start work for ``queries`` in the background (see the module docstring); by default none."""

    def __call__(self, queries: "Sequence[Query | str] | Query | str",
                 candidates: Candidates | None = None) -> Candidates:
        """Run on queries given as Query objects or plain strings (see :func:`as_queries`);
        ``candidates`` are the input of a first step that reranks."""
        return Executor().run(self.compile(), as_queries(queries), candidates)

    def search(self, queries: "Sequence[Query | str] | Query | str", k: int | None = None) -> Candidates:
        """Run on queries given as Query objects or plain strings (numbered "0", "1", ...);
        ``k`` keeps each query's top k."""
        node = self if k is None else self % k
        return node(queries)

    # -- compiling ------------------------------------------------------------------------

    def compile(self) -> "Pipeline":
        """An equivalent, cheaper pipeline (cutoffs pushed into retrievers)."""
        return self

    def limit(self, k: int) -> "Pipeline":
        """This node keeping at most ``k`` results per query (a stage that can produce fewer
        results itself overrides this)."""
        return Cutoff(self, k)

    def fuse_next(self, following: "Pipeline") -> "Pipeline | None":
        """One stage equivalent to ``self >> following``, if this stage can offer one."""
        return None

    # -- operators ------------------------------------------------------------------------

    def __rshift__(self, other: "Pipeline") -> "Pipeline":
        return Then.of(self, _check(other, ">>"))

    def __mod__(self, k: int) -> "Pipeline":
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise CascadeError(f"cutoff must be a positive integer (got {k!r})")
        return Cutoff(self, k)

    def __or__(self, other: "Pipeline") -> "Pipeline":
        return Union.of(self, _check(other, "|"))

    def __add__(self, other: "Pipeline") -> "Pipeline":
        return Fuse.plus(self, _check(other, "+"))

    def __mul__(self, weight: float) -> "Pipeline":
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise CascadeError(f"a stage can only be multiplied by a number (got {weight!r})")
        return Weighted(float(weight), self)

    __rmul__ = __mul__

    # -- printing -------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"Pipeline({str(self)!r})"


def as_queries(queries: "Sequence[Query | str] | Query | str") -> list[Query]:
    """Query objects for Query objects or plain strings (a string gets its position as id);
    one string or Query is one query.

    >>> as_queries(["cats", Query("q7", "dogs")])
    [Query(id='0', text='cats'), Query(id='q7', text='dogs')]
    """
    if isinstance(queries, (str, Query)):
        queries = [queries]
    out = []
    for i, q in enumerate(queries):
        if isinstance(q, Query):
            out.append(q)
        elif isinstance(q, str):
            out.append(Query(str(i), q))
        else:
            raise CascadeError(f"a query is a string or a cascade.Query (got {type(q).__name__})")
    return out


def _check(other: object, op: str) -> "Pipeline":
    if not isinstance(other, Pipeline):
        raise CascadeError(f"'{op}' needs a stage or pipeline on both sides (got {type(other).__name__})")
    return other


# -- operator nodes -------------------------------------------------------------------------

# Operator nodes nest at most this deep: running, keying, compiling and printing a node recurse
# into its children (a few Python frames per level). Chains of one operator do not nest: ``>>``,
# ``|`` and ``+`` chains are flat, a cutoff of a cutoff is one cutoff.
MAX_NESTING = 100


def _nesting(children: Sequence[Pipeline]) -> int:
    """How deep a new operator node over ``children`` nests; CascadeError past MAX_NESTING."""
    depth = 1 + max((getattr(c, "_nesting", 1) for c in children), default=0)
    if depth > MAX_NESTING:
        raise CascadeError(f"pipeline nested more than {MAX_NESTING} operators deep; "
                           "write it with fewer levels (chains of >>, |, + and % do not nest)")
    return depth


class Then(Pipeline):
    """``a >> b >> c``: each stage receives the previous stage's candidates."""

    precedence = THEN

    def __init__(self, steps: Sequence[Pipeline]) -> None:
        if len(steps) < 2:
            raise ValueError("Then needs at least two steps")
        self.steps = tuple(steps)
        self._nesting = _nesting(self.steps)

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

    def input_children(self) -> Sequence[Pipeline]:
        return self.steps[:1]

    def execute(self, runner: Runner, queries: Sequence[Query], candidates: Candidates | None) -> Candidates:
        out = runner.run(self.steps[0], queries, candidates)
        for step in self.steps[1:]:
            out = runner.run(step, queries, out)
        return out

    def compile(self) -> Pipeline:
        """Compile each step; a step that reads only its top n inputs limits the step before it,
        and a step that offers to absorb the next one does."""
        out: list[Pipeline] = []
        for step in (s.compile() for s in self.steps):
            if out and step.input_depth is not None:
                out[-1] = out[-1].limit(step.input_depth)
            fused = out[-1].fuse_next(step) if out else None
            if fused is not None:
                out[-1] = fused
            else:
                out.append(step)
        return Then.of(*out) if len(out) > 1 else out[0]

    def limit(self, k: int) -> Pipeline:
        return Then.of(*self.steps[:-1], self.steps[-1].limit(k))

    def __str__(self) -> str:
        return " >> ".join(wrap(s, THEN + 1) for s in self.steps)


class Cutoff(Pipeline):
    """``a % k``: the top ``k`` candidates of ``a`` for each query. A cutoff of a cutoff is one
    cutoff (``a % 100 % 10`` is ``a % 10``: the same output), so chains do not nest."""

    precedence = MUL

    def __init__(self, inner: Pipeline, k: int) -> None:
        k = int(k)
        if isinstance(inner, Cutoff):
            inner, k = inner.inner, min(k, inner.k)
        self.inner, self.k = inner, k
        self._nesting = _nesting((inner,))

    def key(self) -> tuple[Any, ...]:
        return ("cutoff", self.k, self.inner.key())

    def children(self) -> Sequence[Pipeline]:
        return (self.inner,)

    def execute(self, runner: Runner, queries: Sequence[Query], candidates: Candidates | None) -> Candidates:
        return cut(runner.run(self.inner, queries, candidates), self.k)

    def compile(self) -> Pipeline:
        return self.inner.compile().limit(self.k)

    def limit(self, k: int) -> Pipeline:
        return self.inner.limit(min(k, self.k))

    def __str__(self) -> str:
        return f"{wrap(self.inner, MUL)} % {self.k}"


class Weighted(Pipeline):
    """``w * a``: a's scores times ``w``; inside a fusion, the weight of that input."""

    precedence = MUL

    def __init__(self, weight: float, inner: Pipeline) -> None:
        self.weight, self.inner = float(weight), inner
        self._nesting = _nesting((inner,))

    def key(self) -> tuple[Any, ...]:
        return ("weight", self.weight, self.inner.key())

    def children(self) -> Sequence[Pipeline]:
        return (self.inner,)

    def execute(self, runner: Runner, queries: Sequence[Query], candidates: Candidates | None) -> Candidates:
        out = runner.run(self.inner, queries, candidates)
        order = np.lexsort((out.doc, -out.score * self.weight, out.query_index()))
        return Candidates(out.query_ids, out.offsets, out.doc[order],
                          (out.score * self.weight)[order].astype(np.float32), out.space)

    def compile(self) -> Pipeline:
        return Weighted(self.weight, self.inner.compile())

    def limit(self, k: int) -> Pipeline:
        # a positive weight keeps the order, so the top k of w * a are w * (the top k of a)
        return Weighted(self.weight, self.inner.limit(k)) if self.weight > 0 else Cutoff(self, k)

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
        self._nesting = _nesting(self.inputs)

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

    def execute(self, runner: Runner, queries: Sequence[Query], candidates: Candidates | None) -> Candidates:
        outs = [runner.run(p, queries, candidates) for p in self.inputs]
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

    def compile(self) -> Pipeline:
        return Union([p.compile() for p in self.inputs])

    def __str__(self) -> str:
        return " | ".join(wrap(p, UNION + 1) for p in self.inputs)


FuseFn = Callable[..., Candidates]


@dataclass(frozen=True)
class FusionMethod:
    """A fusion method: its name in pipeline strings, ``fuse(inputs, weights, **params)`` and
    its declared parameters. Methods register themselves as stages (see :mod:`cascade.fuse`)."""

    name: str
    fuse: FuseFn
    params: tuple[ParamInfo, ...] = ()
    help: str = ""

    def check_params(self, given: dict[str, Any]) -> dict[str, Any]:
        """The non-default settings among ``given`` (so equal pipelines print and compare equal)."""
        return non_defaults(self.params, check_params(self.name, self.params, given))


def raw_sum(inputs: Sequence[Candidates], weights: Sequence[float] | None = None) -> Candidates:
    """``a + b``: CombSUM of raw (weighted) scores, a document missing from an input adding 0."""
    weights = weights or [1.0] * len(inputs)
    return group_sum(inputs, [w * c.score.astype(np.float64) for w, c in zip(weights, inputs)])


SUM = FusionMethod("sum", raw_sum, help="a + b: CombSUM of raw scores")


class Fuse(Pipeline):
    """Score fusion of several inputs by a :class:`FusionMethod`; ``a + b`` is :data:`SUM`,
    printed infix."""

    def __init__(self, method: FusionMethod, inputs: Sequence[Pipeline], params: dict[str, Any] | None = None) -> None:
        if len(inputs) < 1:
            raise CascadeError(f"{method.name} needs at least one pipeline to fuse")
        self.method = method
        self.inputs = tuple(inputs)
        self.params = method.check_params(params or {})
        self._nesting = _nesting(self.inputs)

    @property
    def precedence(self) -> int:  # type: ignore[override]
        return PLUS if self.method is SUM else ATOM

    @classmethod
    def plus(cls, a: Pipeline, b: Pipeline) -> Pipeline:
        flat: list[Pipeline] = []
        for p in (a, b):
            flat.extend(p.inputs if isinstance(p, Fuse) and p.method is SUM else (p,))
        return cls(SUM, flat)

    def key(self) -> tuple[Any, ...]:
        return ("fuse", self.method.name, tuple(sorted(self.params.items()))) + tuple(p.key() for p in self.inputs)

    def children(self) -> Sequence[Pipeline]:
        return self.inputs

    def execute(self, runner: Runner, queries: Sequence[Query], candidates: Candidates | None) -> Candidates:
        weights, outs = [], []
        for p in self.inputs:
            weight, inner = fusion_weight(p)
            weights.append(weight)
            outs.append(runner.run(inner, queries, candidates))
        return self.method.fuse(outs, weights, **self.params)

    def compile(self) -> Pipeline:
        return Fuse(self.method, [p.compile() for p in self.inputs], self.params)

    def __str__(self) -> str:
        if self.method is SUM:
            return " + ".join(wrap(p, PLUS + 1) for p in self.inputs)
        return format_call(self.method.name, [str(p) for p in self.inputs], self.params)


# -- printing -------------------------------------------------------------------------------


def wrap(node: Pipeline, min_precedence: int) -> str:
    """``str(node)``, parenthesised when it binds looser than ``min_precedence``."""
    text = str(node)
    return f"({text})" if node.precedence < min_precedence else text


_BARE = re.compile(r"[A-Za-z_./~][\w./~:-]*")
_BARE_NUMBER = re.compile(r"\.\d+([eE][+-]?\d+)?")


def format_value(value: Any) -> str:
    """A parameter value as the grammar writes it (quoted when it is not a bare word)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value).replace("e+", "e")  # 1e+20 -> 1e20: '+' would be an operator
    text = str(value)
    if _BARE.fullmatch(text) and text not in ("true", "false") and not _BARE_NUMBER.fullmatch(text):
        return text  # ('.5' would read back as a number)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_call(name: str, positional: Sequence[str] = (), params: dict[str, Any] | None = None) -> str:
    """``name`` or ``name(a, b, key=value)``."""
    parts = list(positional) + [f"{k}={format_value(v)}" for k, v in sorted((params or {}).items())]
    return f"{name}({', '.join(parts)})" if parts else name
