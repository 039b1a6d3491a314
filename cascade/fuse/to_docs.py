"""``to_docs``: passage results of a passage index made into document results.

A document's score is fused from its retrieved passages' scores (Dai & Callan, "Deeper Text
Understanding for IR with Contextual Neural Language Modeling", SIGIR 2019):

- ``maxp`` (default): its best passage's score;
- ``firstp``: its first passage's score (documents whose first passage was not retrieved are
  left out);
- ``sum``: the sum of its ``n`` best passages' scores (SumP when n covers them all).

Hit ids are document ids; each document is shown by its best passage (``firstp``: its first
passage): the passage's title (document title > headings), text (the snippet) and metadata
(``_passage``: document id, passage number, count, character span). See
:mod:`cascade.index.passages` for how passage indexes are made.

**Documents by default.** A pipeline string parsed against a passage index gets ``>> to_docs``
appended unless it already holds a ``to_docs`` step, so ``cascade search``, ``cascade eval``,
the server and ``cascade.parse(...)`` answer with documents; ask for passages with
``cascade.parse(text, index=idx, passages=True)`` (CLI ``cascade search --passages``), or use
stage objects directly: ``cascade.BM25(idx)`` returns passages. Cutoffs before ``to_docs``
count passages: ``bm25 % 100 >> to_docs`` gives at most 100 documents (MaxP is exact for the
documents it returns: any document not among them scores below the 100th passage; FirstP and
sum see only the passages retrieved).

Stages after ``to_docs`` see each document as its representative passage: a reranker in
``bm25 % 200 >> to_docs % 20 >> cross_encoder`` scores each of 20 documents by its best
passage (its output is passages again, one per document, which the default ``to_docs``
turns back into documents). Rerank passages before aggregating to score them all:
``bm25 % 100 >> cross_encoder >> to_docs``.

>>> import tempfile, cascade
>>> long = "Intro words here. " * 60 + "The secret ingredient is cardamom."
>>> docs = [cascade.Doc("cake", long), cascade.Doc("tea", "Cardamom tea. Cardamom milk. Cardamom.")]
>>> idx = cascade.Index.build(docs, tempfile.mkdtemp() + "/p.idx", passages={"tokens": 50, "overlap": 10})
>>> [h.id for h in cascade.parse("bm25", index=idx).search("secret cardamom").hits(0)]
['cake', 'tea']
>>> best = cascade.parse("bm25", index=idx).search("secret cardamom").hits(0)[0]
>>> best.text[-34:], best.meta["_passage"]["n"], best.meta["_passage"]["count"]
('The secret ingredient is cardamom.', 4, 5)
>>> [h.id for h in cascade.parse("bm25", index=idx, passages=True)(["secret cardamom"]).hits(0)]
['cake#4', 'tea#0']
>>> [h.id for h in cascade.parse("bm25 >> to_docs(agg=firstp)", index=idx).search("secret cardamom").hits(0)]
['tea']
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from cascade.core.candidates import Candidates, sort_within_queries
from cascade.core.errors import CascadeError
from cascade.core.nodes import Pipeline, Runner, format_call
from cascade.core.params import ParamInfo, check_params, non_defaults
from cascade.core.registry import Context, register_stage
from cascade.core.types import Query
from cascade.index.passages import DocumentView, first_passages

AGGREGATIONS = ("maxp", "firstp", "sum")
PARAMS = (
    ParamInfo("agg", str, "maxp", "a document's score from its passages': maxp (best), firstp (first passage), "
              "sum (of the n best)", choices=AGGREGATIONS),
    ParamInfo("n", int, 3, "with agg=sum: how many of a document's best passages are summed", min=1),
)


def aggregate(qidx: np.ndarray, group: np.ndarray, score: np.ndarray, is_first: np.ndarray, agg: str,
              n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """The kernel: for candidates (query position, document group, score, whether the passage
    is its document's first), one entry per (query, group): the position of the candidate that
    represents it (best passage; ``firstp``: the first passage) and its score (float64).

    >>> aggregate(np.array([0, 0, 0]), np.array([7, 7, 9]), np.array([3., 2., 1.]),
    ...           np.array([False, True, True]), "sum", n=2)
    (array([0, 2]), array([5., 1.]))
    """
    if agg == "firstp":
        keep = np.flatnonzero(is_first)
        return keep, score[keep].astype(np.float64)
    order = np.lexsort((-score, group, qidx))  # per (query, document): best passage first
    q, g = qidx[order], group[order]
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = (q[1:] != q[:-1]) | (g[1:] != g[:-1])
    head = np.flatnonzero(starts)
    if agg == "maxp":
        return order[head], score[order[head]].astype(np.float64)
    rank = np.arange(len(order)) - np.repeat(head, np.diff(np.append(head, len(order))))
    counted = np.where(rank < n, score[order].astype(np.float64), 0.0)
    sums = np.add.reduceat(counted, head) if len(head) else np.zeros(0)
    return order[head], sums


def to_documents(cands: Candidates, index: Any, agg: str = "maxp", n: int = 3) -> Candidates:
    """Passage candidates of the passage index ``index`` as document candidates (see the module
    docstring); candidates that are documents already are returned as they are."""
    if agg not in AGGREGATIONS:
        raise CascadeError(f"to_docs: agg must be one of {', '.join(AGGREGATIONS)} (got {agg!r})")
    if isinstance(cands.space, DocumentView):
        return cands
    if cands.space is not index:  # a stored run or a fusion over other spaces: passage ids?
        nums = index.doc_numbers(cands.space.doc_ids(cands.doc))
        if len(nums) and nums.min() < 0:
            return cands  # not passages of this index (e.g. documents fused by id)
        cands = Candidates(cands.query_ids, cands.offsets, nums, cands.score, index)
    firsts = first_passages(index)
    doc = cands.doc.astype(np.int64)
    group = firsts[doc]
    pos, score = aggregate(cands.query_index(), group, cands.score, group == doc, agg, n)
    return sort_within_queries(cands.query_ids, cands.query_index()[pos], doc[pos], score, DocumentView(index))


class ToDocs(Pipeline):
    """The ``to_docs`` stage: aggregate the passages of the step before it into documents."""

    name = "to_docs"
    params = PARAMS

    def __init__(self, index: Any, agg: str = "maxp", n: int = 3) -> None:
        values = check_params(self.name, PARAMS, {"agg": agg, "n": n})
        if not index.passages:
            raise CascadeError(f"to_docs: {index.path} is not a passage index (build one with --passage-tokens N, "
                               "Python: passages=N)")
        self.index, self.agg, self.n = index, values["agg"], values["n"]

    def key(self) -> tuple[Any, ...]:
        return ("to_docs", self.agg, self.n if self.agg == "sum" else None, self.index.version)

    def __str__(self) -> str:
        return format_call(self.name, params=non_defaults(PARAMS, {"agg": self.agg, "n": self.n}))

    def execute(self, runner: Runner, queries: Sequence[Query], candidates: Candidates | None) -> Candidates:
        if candidates is None:
            raise CascadeError("to_docs turns the passages of the step before it into documents: "
                               "write e.g. 'bm25 % 100 >> to_docs'")
        return to_documents(candidates, self.index, self.agg, self.n)


def has_to_docs(node: Pipeline) -> bool:
    """Whether a pipeline holds a ``to_docs`` step anywhere."""
    return isinstance(node, ToDocs) or any(has_to_docs(c) for c in node.children())


def documents_by_default(node: Pipeline, index: Any) -> Pipeline:
    """``node >> to_docs`` when ``index`` is a passage index and ``node`` holds no ``to_docs``."""
    if index is None or not getattr(index, "passages", None) or has_to_docs(node):
        return node
    return node >> ToDocs(index)


def _build(ctx: Context, **params: Any) -> Pipeline:
    return ToDocs(ctx.index("to_docs"), **params)


register_stage("to_docs", _build, params=PARAMS,
               help="passages of a passage index -> documents (MaxP, FirstP or sum of the n best passages)")
