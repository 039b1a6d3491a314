"""Late-interaction MaxSim reranking over stored contextual token vectors, with rank-safe pruning.

A document's score is ``sum over query tokens i of max over document tokens j of q_i . d_j``
(Khattab & Zaharia, "ColBERT", SIGIR 2020), here with a bi-encoder's own contextual token
vectors (MiniLM / mpnet) or any sentence-transformers checkpoint. Reranking the candidates of
a strong first stage rather than gathering by token follows Martinico, Nardini, Rulli &
Venturini, "Multivector Reranking in the Era of Strong First-Stage Retrievers" (2025).

Early pruning, when a cutoff ``% k`` follows: every candidate first gets a cheap upper bound
from a low-rank projection of its token vectors, and candidates are scored exactly in
descending bound order until the next bound falls below the k-th exact score. The bound is a
true bound (see :mod:`cascade.rerank.maxsim_bounds`), so the top k are exactly those of
unpruned scoring. ``prune=True`` builds the bounds (and stores them in the index) when they
are missing; ``prune="auto"`` (the default) uses bounds only when they are already stored,
tries them on the first queries of a batch and keeps them only while they skip enough
candidates to pay for themselves: with the contextual token vectors of MiniLM, which are not
trained for late interaction, the bounds are loose and skip almost nothing (``bench/neural.py
--speed``; ``bench/maxsim_pruning.py`` measures the slack against the score gaps), so a
search never spends time (or writes to the index) building them unasked. ``prune=False``
never prunes.

>>> pipe = cascade.parse("bm25 % 100 >> maxsim % 10", index=idx)   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import time
import warnings
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterable, Sequence

import numpy as np

from cascade.core.nodes import Pipeline
from cascade.core.params import ParamInfo, check_params
from cascade.core.registry import Context, register_stage
from cascade.core.types import Query
from cascade.index.index import Index
from cascade.models.encoders import query_encodings
from cascade.models.stored import ensure_biencoder, token_vectors
from cascade.rerank.base import ALL, K, Reranker, Scored
from cascade.rerank.maxsim_bounds import TokenBounds

if TYPE_CHECKING:
    from cascade.index.segment import Segment

CHUNK = 8  # candidates scored exactly between two checks of the stopping rule
AUTO_TRIAL = 8  # prune="auto": queries tried with bounds before deciding
AUTO_KEEP = 0.7  # ... and kept on only if at most this share of candidates had to be scored


TOKEN_BUCKET = 32  # document token rows are padded to a multiple of this (repeating a row: the max stays)
QUERY_BUCKET = 8  # query token rows are padded to a multiple of this (the padded rows' maxima are dropped)


def _bucket(n: int, size: int) -> int:
    return max(size, -(-n // size) * size)


def maxsim(q: np.ndarray, tokens: np.ndarray) -> np.float32:
    """MaxSim of query token vectors ``q`` [m, d] (float32) with one document's ``tokens`` [t, d],
    in numpy, with the shapes :func:`exact_scores` uses (so the two agree)."""
    if len(tokens) == 0:
        return np.float32(0.0)
    m, t = len(q), len(tokens)
    qp = np.zeros((_bucket(m, QUERY_BUCKET), q.shape[1]), np.float32)
    qp[:m] = q
    x = np.empty((_bucket(t, TOKEN_BUCKET), tokens.shape[1]), np.float32)
    x[:t] = tokens
    x[t:] = x[0]
    return (qp @ x.T)[:m].max(axis=1).sum(dtype=np.float32)


def exact_scores(q: np.ndarray, documents: Iterable[np.ndarray]) -> np.ndarray:
    """float32 exact MaxSim of ``q`` with each document's token rows, one product per document.

    A document's score depends only on its own rows and the query, never on which documents
    were scored with it, so pruned and unpruned reranking agree to the last bit. Shapes are
    rounded up to a few buckets (documents to multiples of TOKEN_BUCKET rows by repeating a
    row, queries to multiples of QUERY_BUCKET rows whose maxima are dropped): BLAS libraries
    prepare work per matrix shape, and with a shape per (query length, document length) that
    preparation cost more than the products (about 2 ms per new shape). Through torch when it
    is installed (its float16-to-float32 conversion is vectorised), else numpy."""
    try:
        import torch
    except ImportError:
        return np.array([maxsim(q, tokens) for tokens in documents], dtype=np.float32)
    m = len(q)
    qp = torch.zeros((_bucket(m, QUERY_BUCKET), q.shape[1]), dtype=torch.float32)
    qp[:m] = torch.from_numpy(np.ascontiguousarray(q, dtype=np.float32))
    buffers: dict[int, Any] = {}
    out = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small products: a second thread only adds contention
    try:
        with warnings.catch_warnings():  # memory-mapped rows are read-only; torch only reads them
            warnings.simplefilter("ignore", UserWarning)
            for tokens in documents:
                t = len(tokens)
                if t == 0:
                    out.append(0.0)
                    continue
                rows = _bucket(t, TOKEN_BUCKET)
                x = buffers.get(rows)
                if x is None:
                    x = buffers[rows] = torch.empty((rows, q.shape[1]), dtype=torch.float32)
                x[:t] = torch.from_numpy(tokens)
                x[t:] = x[0]
                out.append((qp @ x.T)[:m].amax(dim=1).sum().item())
    finally:
        torch.set_num_threads(threads)
    return np.array(out, dtype=np.float32)


def one_blas_thread() -> ContextManager[Any]:
    """BLAS limited to one thread (threadpoolctl, of the neural extra); without threadpoolctl
    (an ONNX-only install) nothing is limited: MaxSim runs, a little slower, rather than fail."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


PARAMS = (
    ParamInfo("model", str, "minilm", "bi-encoder whose contextual token vectors are compared"),
    K,
    ParamInfo("prune", object, "auto", "rank-safe pruning by upper bounds: true, false or auto",
              choices=(True, False, "auto")),
    ParamInfo("rank", int, 32, "dimensions of the low-rank projection the bounds use", min=1),
)


class DocTokens:
    """Token vectors of documents given by global doc number, gathered from memory-mapped segments."""

    def __init__(self, segments: "Sequence[Segment]", bases: np.ndarray, name: str) -> None:
        self.parts = [token_vectors(seg, name) for seg in segments]
        self.bases = bases

    def slices(self, nums: np.ndarray) -> list[tuple[int, int, int]]:
        """(segment, start, end) of each document's token rows."""
        segs = np.searchsorted(self.bases, nums, side="right") - 1
        out = []
        for s, n in zip(segs.tolist(), (nums - self.bases[segs]).tolist()):
            offsets = self.parts[s][0]
            out.append((s, int(offsets[n]), int(offsets[n + 1])))
        return out

    def rows(self, segment: int, start: int, end: int) -> np.ndarray:
        return self.parts[segment][1][start:end]


class MaxSim(Reranker):
    """Rerank candidates by MaxSim with ``model``'s stored token vectors (encoded on first use)."""

    name = "maxsim"
    params = PARAMS

    def __init__(self, index: Index, model: str = "minilm", k: int | None = None, prune: bool | str = "auto",
                 rank: int = 32, progress: Callable[[int], None] | None = None) -> None:
        values = check_params(self.name, PARAMS, {"model": model, "k": k, "prune": prune, "rank": rank})
        super().__init__(index, values["k"])
        self.model, self.prune, self.rank = values["model"], values["prune"], values["rank"]
        self._progress = progress

    def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model} if self.model != "minilm" else {}
        if self.prune != "auto":
            out["prune"] = self.prune
        return out

    def key(self) -> tuple[Any, ...]:  # pruning never changes the result, so it is not part of the key
        return (self.name, self.model, self.k, self.index.version)

    @cached_property
    def _stored(self) -> tuple[list["Segment"], str]:
        return ensure_biencoder(self.index, self.model, tokens=True, progress=self._progress)

    @cached_property
    def tokens(self) -> DocTokens:
        segments, name = self._stored
        return DocTokens(segments, self.index.bases, name)

    @cached_property
    def bounds(self) -> TokenBounds | None:
        """The MaxSim upper bounds: built and stored if missing when ``prune=True``; with
        ``prune="auto"`` only those already stored (None when there are none)."""
        segments, name = self._stored
        return TokenBounds.of(self.index, name, self.rank, build=self.prune is True)

    def prepare(self) -> None:
        """Encode the collection's tokens if needed, load the model (and the bounds)."""
        self.tokens  # noqa: B018
        self.bounds  # noqa: B018
        query_encodings(self.model).load()

    def query_tokens(self, queries: Sequence[Query]) -> list[np.ndarray]:
        return query_encodings(self.model).tokens([q.text for q in queries])

    def score(self, queries: Sequence[Query], docs: list[np.ndarray], k: int) -> Scored:
        return self.score_timed(queries, docs, k)[0]

    def score_timed(self, queries: Sequence[Query], docs: list[np.ndarray], k: int) -> tuple[Scored, np.ndarray]:
        """Scores, and each query's seconds: its own scoring plus an equal share of encoding the
        batch's queries."""
        self.tokens  # encode the collection first if needed (not query time)
        start = time.perf_counter()
        qtoks = self.query_tokens(queries)
        seconds = np.full(len(queries), (time.perf_counter() - start) / max(len(queries), 1))
        pruning = self.prune is not False and k < ALL and self.bounds is not None
        results = []
        tried = scored = 0
        # one small matrix product per document: BLAS threads only add contention here
        with one_blas_thread():
            for i, (q, nums) in enumerate(zip(qtoks, docs)):
                start = time.perf_counter()
                if pruning and len(nums) > k:
                    results.append(self.score_pruned(q, nums, k))
                    tried, scored = tried + len(nums), scored + self.last_scored
                    if self.prune == "auto" and i + 1 == AUTO_TRIAL and scored > AUTO_KEEP * tried:
                        pruning = False  # the bounds cost more than they save on these vectors
                else:
                    results.append(self.score_all(q, nums))
                seconds[i] += time.perf_counter() - start
        self.pruned_share = 1 - scored / tried if tried else 0.0
        return results, seconds

    def score_all(self, q: np.ndarray, nums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = self.tokens.rows
        scores = exact_scores(q, (rows(s, b, e) for s, b, e in self.tokens.slices(nums)))
        return np.arange(len(nums)), scores

    def score_pruned(self, q: np.ndarray, nums: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores for candidates taken in descending upper-bound order, stopping once no
        remaining candidate's bound can reach the k-th exact score (ties included)."""
        where = self.tokens.slices(nums)
        assert self.bounds is not None
        upper = self.bounds.upper_bounds(q, where)
        order = np.argsort(-upper, kind="stable")
        done_pos: list[np.ndarray] = []
        done_scores: list[np.ndarray] = []
        kth = -np.inf
        scored = 0
        while scored < len(order):
            if scored >= k and upper[order[scored]] < kth:
                break
            batch = order[scored:scored + CHUNK]
            done_pos.append(batch)
            done_scores.append(exact_scores(q, (self.tokens.rows(*where[i]) for i in batch)))
            scored += len(batch)
            if scored >= k:
                all_scores = np.concatenate(done_scores)
                kth = float(np.partition(all_scores, len(all_scores) - k)[len(all_scores) - k])
        self.last_scored = scored
        return np.concatenate(done_pos), np.concatenate(done_scores)


def _build(ctx: Context, **params: Any) -> Pipeline:
    return MaxSim(ctx.index("maxsim"), progress=ctx.progress("encoding document tokens"), **params)


register_stage("maxsim", _build, params=PARAMS,
               help="late-interaction MaxSim rerank over stored contextual token vectors, rank-safe pruning")
