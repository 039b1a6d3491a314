"""Pipelines: stages combined with operators, printable in the same grammar they parse from.

    a >> b      then: b reranks what a retrieved
    a % k       cutoff: keep a's top k per query
    a | b       union of candidates
    a + b       CombSUM of raw scores (``w * a`` weights an input)
    rrf(a, b)   reciprocal rank fusion (also combsum, combmnz, linear: see cascade.fuse)

Precedence follows Python's: ``|`` < ``>>`` < ``+`` < ``*``, ``%``; so the string and the
Python expression mean the same thing. Every node has a ``key()``: equal keys, equal output.

>>> from cascade.pipeline.function import stage
>>> @stage
... def first(queries, candidates): ...
>>> @stage
... def second(queries, candidates): ...
>>> str(first % 100 >> second % 10)
'first % 100 >> second % 10'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from cascade.data.types import Query
from cascade.errors import CascadeError

if TYPE_CHECKING:
    from cascade.pipeline.candidates import Candidates
    from cascade.pipeline.executor import Executor

# printing precedence: higher binds tighter
UNION, THEN, PLUS, MUL, ATOM = 1, 2, 3, 4, 5


class Pipeline:
    """Base of every stage and operator node."""

    precedence = ATOM

    # -- identity -------------------------------------------------------------------------

    def key(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pipeline) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())

    def children(self) -> Sequence["Pipeline"]:
        return ()

    # -- running --------------------------------------------------------------------------

    def execute(self, executor: "Executor", queries: Sequence[Query], candidates: "Candidates | None") -> "Candidates":
        """Compute this node's output; composite nodes run their children through ``executor``."""
        return self(queries, candidates)

    def __call__(self, queries: Sequence[Query], candidates: "Candidates | None" = None) -> "Candidates":
        from cascade.pipeline.executor import Executor

        return Executor().run(self.compile(), queries, candidates)

    def search(self, queries: Sequence[Query] | Query | str) -> "Candidates":
        """Run on queries given as Query objects or plain strings."""
        if isinstance(queries, (str, Query)):
            queries = [queries]
        qs = [q if isinstance(q, Query) else Query(str(i), q) for i, q in enumerate(queries)]
        return self(qs)

    def compile(self) -> "Pipeline":
        """An equivalent, cheaper pipeline (cutoffs pushed into retrievers, stages fused)."""
        from cascade.pipeline.compile import compile_pipeline

        return compile_pipeline(self)

    # -- optional capabilities (overridden by stages that have them) ------------------------

    depth: int | None = None  # a retriever's own result depth; None: not a depth-aware retriever

    def with_depth(self, k: int) -> "Pipeline":
        """This retriever asked for only ``k`` results (only when ``depth`` is not None)."""
        raise NotImplementedError

    input_depth: int | None = None  # a reranker that reads only its top-n input candidates

    def fuse_next(self, following: "Pipeline") -> "Pipeline | None":
        """A single stage equivalent to ``self >> following``, if this stage can offer one."""
        return None

    # -- operators ------------------------------------------------------------------------

    def __rshift__(self, other: "Pipeline") -> "Pipeline":
        from cascade.pipeline.operators import Then

        return Then.of(self, _check(other, ">>"))

    def __mod__(self, k: int) -> "Pipeline":
        from cascade.pipeline.operators import Cutoff

        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise CascadeError(f"cutoff must be a positive integer (got {k!r})")
        return Cutoff(self, k)

    def __or__(self, other: "Pipeline") -> "Pipeline":
        from cascade.pipeline.operators import Union

        return Union.of(self, _check(other, "|"))

    def __add__(self, other: "Pipeline") -> "Pipeline":
        from cascade.pipeline.operators import Fuse

        return Fuse.plus(self, _check(other, "+"))

    def __mul__(self, weight: float) -> "Pipeline":
        from cascade.pipeline.operators import Weighted

        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise CascadeError(f"a stage can only be multiplied by a number (got {weight!r})")
        return Weighted(float(weight), self)

    __rmul__ = __mul__

    # -- printing -------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"Pipeline({str(self)!r})"


def _check(other: object, op: str) -> Pipeline:
    if not isinstance(other, Pipeline):
        raise CascadeError(f"'{op}' needs a stage or pipeline on both sides (got {type(other).__name__})")
    return other


def wrap(node: Pipeline, min_precedence: int) -> str:
    """``str(node)``, parenthesised when it binds looser than ``min_precedence``."""
    text = str(node)
    return f"({text})" if node.precedence < min_precedence else text


def format_value(value: Any) -> str:
    """A parameter value as the grammar writes it (quoted when it is not a bare word)."""
    import re

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value).replace("e+", "e")  # 1e+20 -> 1e20: '+' would be an operator
    text = str(value)
    if re.fullmatch(r"[A-Za-z_./~][\w./~:-]*", text) and text not in ("true", "false") \
            and not re.fullmatch(r"\.\d+([eE][+-]?\d+)?", text):  # '.5' would read back as a number
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_call(name: str, positional: Sequence[str] = (), params: dict[str, Any] | None = None) -> str:
    """``name`` or ``name(a, b, key=value)``."""
    parts = list(positional) + [f"{k}={format_value(v)}" for k, v in sorted((params or {}).items())]
    return f"{name}({', '.join(parts)})" if parts else name
