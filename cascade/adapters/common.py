"""What the framework adapters share: search an index with a pipeline, and rerank documents
handed over by a framework (those of the index by their ids; any others through a temporary
index built from their texts).

>>> import tempfile, cascade
>>> idx = cascade.Index.build([cascade.Doc("a", "solar power"), cascade.Doc("b", "wind power")],
...                           tempfile.mkdtemp() + "/i")
>>> [(r.id, r.rank) for r in PipelineSearcher(idx, "bm25").search("solar", k=5)]
[('a', 1)]
>>> [pos for pos, score in rerank("wind", [Item("x", "solar panels"), Item("y", "wind farms")], "bm25")]
[1]
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from importlib.util import find_spec
from typing import Any, Sequence

import numpy as np

from cascade.context.base import entry_numbers
from cascade.core.candidates import Candidates, cut
from cascade.core.errors import CascadeError
from cascade.core.executor import Executor
from cascade.core.nodes import Pipeline
from cascade.core.registry import Context
from cascade.core.types import Doc, Query
from cascade.index.index import Index
from cascade.pipeline.parse import parse


@dataclass
class Result:
    """One result of a pipeline: id (a document's, or a passage's in a passage index), score,
    1-based rank and the stored fields shown for it."""

    id: str
    score: float
    rank: int
    title: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Item:
    """A document a framework hands over to be reranked: its id (may be empty), text, title."""

    id: str
    text: str
    title: str = ""


def require(module: str, extra: str, what: str) -> None:
    """A CascadeError naming the extra when ``module`` cannot be imported."""
    if find_spec(module) is None:
        raise CascadeError(f"{what} needs {module}, which is not installed (pip install 'cascade-ir[{extra}]')")


def as_pipeline(pipeline: str | Pipeline, index: Index | None) -> Pipeline:
    """``pipeline`` parsed against ``index`` when it is a string."""
    if isinstance(pipeline, Pipeline):
        return pipeline
    return parse(pipeline, Context.of(index=index))


def results(index: Index, cands: Candidates, i: int = 0, k: int | None = None) -> list[Result]:
    """Query ``i``'s results (its first ``k``) with the stored fields of the entries behind them."""
    top = cut(cands, k) if k is not None else cands
    s, e = int(top.offsets[i]), int(top.offsets[i + 1])
    one = Candidates([top.query_ids[i]], [0, e - s], top.doc[s:e], top.score[s:e], top.space)
    nums, space = entry_numbers(one, index)
    ids = space.doc_ids(nums)
    docs = index.docs(nums) if len(nums) else []
    return [Result(doc_id, float(score), rank, d.title, d.text, dict(d.meta))
            for rank, (doc_id, score, d) in enumerate(zip(ids, one.score.tolist(), docs), 1)]


class PipelineSearcher:
    """A pipeline over an index, answering one query at a time."""

    def __init__(self, index: Index, pipeline: str | Pipeline = "bm25") -> None:
        if not isinstance(index, Index):
            raise CascadeError(f"a cascade.Index is needed (got {type(index).__name__}); open one with "
                               "cascade.Index.open(PATH)")
        self.index = index
        self.pipeline = as_pipeline(pipeline, index).compile()

    def search(self, query: str, k: int = 10) -> list[Result]:
        if not isinstance(query, str) or not query.strip():
            raise CascadeError("the query is empty")
        cands = Executor().run(self.pipeline, [Query("0", query)])
        return results(self.index, cands, 0, k)


def rerank(query: str, items: Sequence[Item], pipeline: str | Pipeline, index: Index | None = None,
           k: int | None = None) -> list[tuple[int, float]]:
    """``(position in items, score)`` of the reranked ``items``, best first (at most ``k``).

    With ``index`` holding every item's id, the pipeline (a reranker: ``cross_encoder``,
    ``dense_rerank``, ``llm_pointwise``...) reranks them as candidates of that index; otherwise the
    items are indexed into a temporary index (ids: theirs, or their positions) and the pipeline runs
    there (``bm25`` then scores them among themselves, and leaves out those sharing no term with the
    query)."""
    if not items:
        return []
    if not isinstance(query, str) or not query.strip():
        raise CascadeError("the query is empty")
    ids = [it.id for it in items]
    if index is not None and all(ids) and len(set(ids)) == len(ids):
        nums = index.doc_numbers(ids)
        if (nums >= 0).all():
            return _rerank_in(index, as_pipeline(pipeline, index), query, np.asarray(nums), k)
    if isinstance(pipeline, Pipeline):
        raise CascadeError("documents from outside the index are reranked by a pipeline string (it is built on "
                           "a temporary index of them); give the pipeline as a string")
    with tempfile.TemporaryDirectory(prefix="cascade-rerank-") as tmp:
        docs = [Doc(str(pos), it.text or " ", it.title) for pos, it in enumerate(items)]
        temp = Index.build(docs, f"{tmp}/items.idx")
        try:
            return _rerank_in(temp, as_pipeline(pipeline, temp), query, np.arange(len(items)), k)
        finally:
            temp.close()


def _rerank_in(index: Index, pipeline: Pipeline, query: str, nums: np.ndarray,
               k: int | None) -> list[tuple[int, float]]:
    """Rerank the entries ``nums`` of ``index``: positions into ``nums`` and scores, best first."""
    cands = Candidates(["0"], [0, len(nums)], nums.astype(np.int32), np.zeros(len(nums), np.float32), index)
    out = Executor().run(pipeline.compile(), [Query("0", query)], cands)
    position = {int(n): p for p, n in enumerate(nums.tolist())}
    got, space = entry_numbers(out, index)
    pairs = [(position[int(n)], float(s)) for n, s in zip(got.tolist(), out.score.tolist()) if int(n) in position]
    return pairs[:k] if k is not None else pairs
