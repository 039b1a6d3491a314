"""The Stage protocol: every retriever and reranker is a callable over query batches."""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

from cascade.data.types import Query
from cascade.pipeline.candidates import Candidates


@runtime_checkable
class Stage(Protocol):
    """``stage(queries, candidates | None) -> Candidates``.

    First stages ignore incoming candidates; rerankers rescore only what they get.
    ``key()`` names the stage and every setting that changes its output (parameters,
    model id, index version), and defines equality for caching.
    """

    def __call__(self, queries: Sequence[Query], candidates: Candidates | None = None) -> Candidates: ...

    def key(self) -> tuple[Any, ...]: ...
