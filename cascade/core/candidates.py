"""Candidates: ranked results for a batch of queries, as ragged columnar arrays, and the doc-id
spaces their numbers live in.

>>> t = IdTable(["a", "b", "c"])
>>> c = Candidates(["q1", "q2"], [0, 2, 3], t.add(["a", "b", "c"]), [2.0, 1.0, 5.0], t)
>>> c.to_run()
{'q1': {'a': 2.0, 'b': 1.0}, 'q2': {'c': 5.0}}
>>> [(qid, list(t.doc_ids(docs))) for qid, docs, _ in c]
[('q1', ['a', 'b']), ('q2', ['c'])]
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Protocol, Sequence

import numpy as np

from cascade.core.errors import CascadeError
from cascade.core.types import Doc, Hit, Query, Run

# How a stage's latencies were measured (Candidates.timing). ``query_seconds`` always carries
# each query's share of the stage's own work (one-off preparation such as encoding a collection
# or loading a model left out), so its mean is the stage's mean latency; ``latency_sample``
# holds the per-query latencies that percentiles may be taken from.
PER_QUERY = "per-query"  # each query timed on its own (alone, or inside the batch): sample = query_seconds
SAMPLED = "sampled"  # the batch shared out; the sample: queries answered again one by one
SHARED = "shared"  # only the batch was timed: every query gets the mean, and there is no sample


class DocIdSpace(Protocol):
    """Maps internal doc numbers to external ids (an :class:`~cascade.Index` is one)."""

    def doc_ids(self, nums: Sequence[int] | np.ndarray) -> list[str]: ...


class DocSource(Protocol):
    """Stored documents by external id (an :class:`~cascade.Index` is one)."""

    def docs_by_id(self, ids: Sequence[str]) -> list[Doc | None]: ...


@dataclass
class Candidates:
    """Results of one stage for ``Q`` queries.

    Query ``i``'s results are ``doc[offsets[i]:offsets[i+1]]`` (int32 doc numbers in
    ``space``) with ``score`` (float32), best first.
    """

    query_ids: list[str]
    offsets: np.ndarray
    doc: np.ndarray
    score: np.ndarray
    space: DocIdSpace
    seconds: dict[str, float] = field(default_factory=dict)
    query_seconds: np.ndarray | None = None  # each query's latency in the stage that made these
    timing: str = SHARED  # how they were measured: PER_QUERY, SAMPLED or SHARED
    latency_sample: np.ndarray | None = None  # per-query latencies for percentiles (None: no sample)
    usage: dict[str, float] = field(default_factory=dict)  # model calls and tokens (LLM stages), else empty
    origin: Any = field(default=None, compare=False, repr=False)  # executor's key of what produced these
    # work the stage used that ran on another thread while other stages ran (a prefetch, see
    # Executor.prefetch): the executor adds it to the stage's clock and its callers', then zeroes it
    background_seconds: float = field(default=0.0, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.offsets = np.asarray(self.offsets, dtype=np.int64)
        self.doc = np.asarray(self.doc, dtype=np.int32)
        self.score = np.asarray(self.score, dtype=np.float32)
        if len(self.offsets) != len(self.query_ids) + 1:
            raise ValueError("offsets must have one more entry than query_ids")
        if len(self.doc) != len(self.score) or self.offsets[-1] != len(self.doc):
            raise ValueError("doc, score and offsets disagree in length")

    @classmethod
    def from_lists(cls, query_ids: list[str], docs: list[np.ndarray], scores: list[np.ndarray],
                   space: DocIdSpace) -> "Candidates":
        offsets = np.zeros(len(docs) + 1, dtype=np.int64)
        np.cumsum([len(d) for d in docs], out=offsets[1:])
        doc = np.concatenate(docs).astype(np.int32, copy=False) if docs else np.empty(0, np.int32)
        score = np.concatenate(scores).astype(np.float32, copy=False) if scores else np.empty(0, np.float32)
        return cls(query_ids, offsets, doc, score, space)

    def __len__(self) -> int:
        return len(self.query_ids)

    def __iter__(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """(query id, doc numbers, scores) for each query, best first."""
        return self.per_query()

    def timed(self, seconds: float | np.ndarray, timing: str, sample: np.ndarray | None = None) -> "Candidates":
        """These candidates with their stage's latency: per-query ``seconds`` (PER_QUERY), or the
        batch's ``seconds`` shared out (SHARED; SAMPLED with a ``sample`` of single-query times)."""
        if timing == PER_QUERY:
            self.query_seconds = np.asarray(seconds, dtype=np.float64)
            self.latency_sample = self.query_seconds
        else:
            self.query_seconds = np.full(len(self.query_ids), float(seconds) / max(len(self.query_ids), 1))
            self.latency_sample = None if sample is None else np.asarray(sample, dtype=np.float64)
        self.timing = timing
        return self

    def query_index(self) -> np.ndarray:
        """For each candidate, the position of its query (int64[n])."""
        return np.repeat(np.arange(len(self.query_ids)), np.diff(self.offsets))

    def ranks(self) -> np.ndarray:
        """1-based rank of each candidate within its query."""
        return np.arange(len(self.doc)) - np.repeat(self.offsets[:-1], np.diff(self.offsets)) + 1

    def per_query(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """(query id, doc numbers, scores) for each query."""
        for i, qid in enumerate(self.query_ids):
            s, e = self.offsets[i], self.offsets[i + 1]
            yield qid, self.doc[s:e], self.score[s:e]

    def hits(self, i: int = 0, k: int | None = None, source: DocSource | None = None) -> list[Hit]:
        """Query ``i``'s first ``k`` results as :class:`Hit` objects, with titles and texts from
        ``source`` (default: the doc-id space, when it stores documents; else they are empty)."""
        start, end = int(self.offsets[i]), int(self.offsets[i + 1])
        if k is not None:
            end = min(end, start + k)
        ids = self.space.doc_ids(self.doc[start:end])
        view_of = getattr(self.space, "passages_of", None)  # documents shown by a passage (to_docs)
        if view_of is not None and (source is None or source is view_of):
            docs = self.space.docs(self.doc[start:end])  # type: ignore[attr-defined]
        else:
            source = source if source is not None else self.space if hasattr(self.space, "docs_by_id") else None
            docs = source.docs_by_id(ids) if source is not None else [None] * len(ids)  # type: ignore[union-attr]
        scores = self.score[start:end].tolist()
        return [Hit(doc_id, score, rank, doc.title, doc.text, doc.meta) if doc is not None else
                Hit(doc_id, score, rank) for rank, (doc_id, score, doc) in enumerate(zip(ids, scores, docs), 1)]

    def to_run(self) -> Run:
        """{query id: {doc id: score}} with external doc ids."""
        ids = self.space.doc_ids(self.doc)
        run: Run = {}
        for i, qid in enumerate(self.query_ids):
            s, e = int(self.offsets[i]), int(self.offsets[i + 1])
            run[qid] = dict(zip(ids[s:e], self.score[s:e].tolist()))
        return run


class IdTable:
    """A doc-id space of its own, for candidates that come from outside an index."""

    def __init__(self, ids: Sequence[str] = ()) -> None:
        self.ids: list[str] = []
        self.numbers: dict[str, int] = {}
        self.add(ids)

    def add(self, ids: Sequence[str]) -> np.ndarray:
        """Numbers for ``ids``, adding the ones not seen before."""
        out = np.empty(len(ids), dtype=np.int32)
        for i, doc_id in enumerate(ids):
            num = self.numbers.get(doc_id)
            if num is None:
                num = self.numbers[doc_id] = len(self.ids)
                self.ids.append(doc_id)
            out[i] = num
        return out

    def doc_ids(self, nums: Sequence[int] | np.ndarray) -> list[str]:
        ids = self.ids
        return [ids[n] for n in np.asarray(nums).tolist()]

    def __len__(self) -> int:
        return len(self.ids)


def in_space(cands: Candidates, space: DocIdSpace) -> Candidates:
    """The same candidates with doc numbers expressed in ``space`` (an IdTable)."""
    if cands.space is space:
        return cands
    if not isinstance(space, IdTable):
        raise TypeError("can only re-map candidates into an IdTable")
    doc = space.add(cands.space.doc_ids(cands.doc))
    return replace(cands, doc=doc, space=space)


def common_space(cands: Sequence[Candidates]) -> tuple[DocIdSpace, list[Candidates]]:
    """One doc-id space for several candidate sets (theirs if shared, else a new IdTable)."""
    first = cands[0].space
    if all(c.space is first for c in cands):
        return first, list(cands)
    table = IdTable()
    return table, [in_space(c, table) for c in cands]


def cut(cands: Candidates, k: int) -> Candidates:
    """Keep the first ``k`` candidates of every query."""
    lengths = np.minimum(np.diff(cands.offsets), k)
    if np.all(lengths == np.diff(cands.offsets)):
        return cands
    keep = np.concatenate([np.arange(s, s + n) for s, n in zip(cands.offsets[:-1], lengths)]) if len(lengths) else \
        np.empty(0, np.int64)
    offsets = np.zeros_like(cands.offsets)
    np.cumsum(lengths, out=offsets[1:])
    return replace(cands, offsets=offsets, doc=cands.doc[keep], score=cands.score[keep])


def aligned(inputs: Sequence[Candidates]) -> tuple[DocIdSpace, list[Candidates]]:
    """Inputs of one fusion in one doc-id space; they must answer the same queries in order."""
    if not inputs:
        raise CascadeError("fusion needs at least one input")
    ids = inputs[0].query_ids
    if any(c.query_ids != ids for c in inputs[1:]):
        raise CascadeError("fusion inputs must cover the same queries in the same order")
    return common_space(inputs)


def group_sum(inputs: Sequence[Candidates], contributions: Sequence[np.ndarray],
              combine: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> Candidates:
    """Sum each input's per-candidate contribution over identical (query, doc) pairs, best first.

    ``combine(sums, counts)`` may turn the sums into final scores (CombMNZ multiplies by the
    number of inputs that retrieved the document)."""
    space, inputs = aligned(inputs)
    qidx = np.concatenate([c.query_index() for c in inputs])
    doc = np.concatenate([c.doc for c in inputs]).astype(np.int64)
    value = np.concatenate(contributions).astype(np.float64)
    width = int(doc.max()) + 1 if len(doc) else 1
    pairs, inverse = np.unique(qidx * width + doc, return_inverse=True)
    sums = np.bincount(inverse, weights=value, minlength=len(pairs))
    if combine is not None:
        sums = combine(sums, np.bincount(inverse, minlength=len(pairs)))
    return sort_within_queries(inputs[0].query_ids, pairs // width, pairs % width, sums, space)


def query_set_hash(queries: Sequence[Query]) -> str:
    """A digest of query ids and texts: part of every stored stage output's key."""
    h = hashlib.blake2b(digest_size=16)
    for q in queries:
        h.update(q.id.encode() + b"\x00" + q.text.encode() + b"\x01")
    return h.hexdigest()


def sort_within_queries(query_ids: list[str], qidx: np.ndarray, doc: np.ndarray, score: np.ndarray,
                        space: DocIdSpace) -> Candidates:
    """Build Candidates from unordered (query index, doc, score) triples: best first, ties by doc number."""
    order = np.lexsort((doc, -score, qidx))
    counts = np.bincount(qidx, minlength=len(query_ids))
    offsets = np.zeros(len(query_ids) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return Candidates(query_ids, offsets, doc[order].astype(np.int32), score[order].astype(np.float32), space)
