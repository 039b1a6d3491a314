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

A batch's queries are scored on ``threads`` threads at once (default: the cores available):
the widening of stored float16 rows and the matrix products release the GIL, and a score
depends only on its query and document, so threads never change a result.

Two further options, both off by default, prune low-quality candidates early as Martinico et
al. (2025) propose; unlike the bounds they are heuristics, so they may change the top k, and
``bench/maxsim_early.py`` measures what they cost in nDCG@10 against what they save:

- candidate pruning (``min_ratio`` in (0, 1]): before any MaxSim work, only candidates whose
  first-stage score is at least ``min_ratio`` times the query's best first-stage score are
  scored. When a query's first-stage scores are not all >= 0 (or the best is not > 0), the
  ratio is taken on the scores min-max normalised over that query's candidates instead, so
  there the lowest candidate is never scored (unless all scores are equal: then all are).
- early termination (``patience``, ``chunk``, ``watch``): candidates are scored in first-stage
  order, ``chunk`` at a time, and scoring stops once ``patience`` chunks in a row put no
  document into the running top ``watch`` (a chunk enters it when one of its scores beats
  the ``watch``-th best score before it; ties do not). ``watch`` defaults to the stage's
  output depth k when a cutoff follows (``maxsim % 10``: 10), else to 10 (WATCH). The bounds
  are not used then (``prune=true`` with ``patience`` is an error; ``auto`` is ignored).

With either option on, candidates that were not MaxSim-scored do not vanish: they follow the
scored ones (which come first, by exact MaxSim) in first-stage order, so the stage's output
holds the same documents as its input (recall at the input depth is unchanged). Their scores
are placeholders below the lowest exact score of the query, descending in first-stage order
(see :func:`follow_in_order`): rank-based consumers (``rrf``, metrics) see the right order,
but a score-based fusion would read them as scores. The two options combine (pruning first,
then early termination over what is left); ``MaxSim.counts`` tallies candidates seen and
scored exactly, across the stage's copies.

>>> pipe = cascade.parse("bm25 % 100 >> maxsim % 10", index=idx)   # doctest: +SKIP
>>> early = cascade.parse("bm25 % 100 >> maxsim(min_ratio=0.6, patience=2, chunk=8) % 10", index=idx)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterable, Sequence, TypeVar

import numpy as np

from cascade.core.candidates import Candidates
from cascade.core.errors import CascadeError
from cascade.core.nodes import Pipeline
from cascade.core.params import ParamInfo, check_params
from cascade.core.registry import Context, register_stage
from cascade.core.types import Query
from cascade.index.index import Index
from cascade.models.encoders import query_encodings
from cascade.models.stored import ensure_biencoder, token_vectors
from cascade.rerank.base import ALL, K, Reranker, Scored
from cascade.rerank.half import half_to_float32
from cascade.rerank.maxsim_bounds import TokenBounds

if TYPE_CHECKING:
    from cascade.index.segment import Segment

CHUNK = 8  # candidates scored exactly between two checks of the stopping rule
AUTO_TRIAL = 8  # prune="auto": queries tried with bounds before deciding
AUTO_KEEP = 0.7  # ... and kept on only if at most this share of candidates had to be scored
WATCH = 10  # early termination without a cutoff after the stage: the top it watches


TOKEN_BUCKET = 32  # document token rows are padded to a multiple of this (repeating a row: the max stays)
QUERY_BUCKET = 8  # query token rows are padded to a multiple of this (the padded rows' maxima are dropped)


def _bucket(n: int, size: int) -> int:
    return max(size, -(-n // size) * size)


def _rows_into(tokens: np.ndarray, x: np.ndarray) -> None:
    """Copy one document's token rows into the first rows of the float32 buffer ``x`` and fill the
    rest of the buffer with its first row (a repeated row leaves every maximum unchanged)."""
    t = len(tokens)
    if tokens.dtype == np.float16 and tokens.flags.c_contiguous:
        half_to_float32(tokens.view(np.uint16).reshape(-1), x[:t].reshape(-1))
    else:
        x[:t] = tokens
    x[t:] = x[0]


def maxsim(q: np.ndarray, tokens: np.ndarray) -> np.float32:
    """MaxSim of query token vectors ``q`` [m, d] (float32) with one document's ``tokens`` [t, d]
    (float16 or float32), with the shapes :func:`exact_scores` uses (so the two agree)."""
    return exact_scores(q, [tokens])[0]


def exact_scores(q: np.ndarray, documents: Iterable[np.ndarray]) -> np.ndarray:
    """float32 exact MaxSim of ``q`` with each document's token rows, one product per document.

    A document's score depends only on its own rows and the query, never on which documents
    were scored with it, so pruned and unpruned reranking agree to the last bit. Shapes are
    rounded up to a few buckets (documents to multiples of TOKEN_BUCKET rows by repeating a
    row, queries to multiples of QUERY_BUCKET rows whose maxima are dropped): BLAS libraries
    prepare work per matrix shape, and with a shape per (query length, document length) that
    preparation cost more than the products (about 2 ms per new shape). The stored float16
    rows are widened by :func:`~cascade.rerank.half.half_to_float32` into a buffer per shape; numpy does the
    products (torch is not needed: importing it took longer than scoring a collection's
    queries)."""
    m = len(q)
    qp = np.zeros((_bucket(m, QUERY_BUCKET), q.shape[1]), np.float32)
    qp[:m] = q
    buffers: dict[int, np.ndarray] = {}
    out = []
    for tokens in documents:
        t = len(tokens)
        if t == 0:
            out.append(np.float32(0.0))
            continue
        rows = _bucket(t, TOKEN_BUCKET)
        x = buffers.get(rows)
        if x is None:
            x = buffers[rows] = np.empty((rows, q.shape[1]), np.float32)
        _rows_into(tokens, x)
        out.append((qp @ x.T)[:m].max(axis=1).sum(dtype=np.float32))
    return np.array(out, dtype=np.float32)


def one_blas_thread() -> ContextManager[Any]:
    """BLAS limited to one thread (threadpoolctl, of the neural extra); without threadpoolctl
    (an ONNX-only install) nothing is limited: MaxSim runs, a little slower, rather than fail."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


# -- early pruning kernels (plain numpy; MaxSim.score_timed applies them per query) -------------

def ratio_keep(first: np.ndarray, min_ratio: float) -> np.ndarray:
    """Which candidates candidate pruning scores: a bool mask over one query's first-stage
    ``first`` scores, true where ``score >= min_ratio * best``. When the scores are not all
    >= 0 or the best is not > 0, the ratio is taken on ``(score - min) / (best - min)``
    instead (all kept when every score is equal)."""
    s = np.asarray(first, dtype=np.float64)
    if not len(s):
        return np.zeros(0, dtype=bool)
    best, worst = float(s.max()), float(s.min())
    if worst >= 0 and best > 0:
        return s >= min_ratio * best
    if best == worst:
        return np.ones(len(s), dtype=bool)
    return (s - worst) / (best - worst) >= min_ratio


def score_in_order(score: Callable[[np.ndarray], np.ndarray], n: int, top: int, chunk: int,
                   patience: int) -> tuple[np.ndarray, np.ndarray]:
    """Early termination over ``n`` candidates in their given order: ``score(positions)``
    scores ``chunk`` of them at a time, and scoring stops after ``patience`` chunks in a row
    put nothing into the running top ``top`` (a chunk enters when one of its scores is above
    the ``top``-th best before it, or fewer than ``top`` were scored before it). Returns the
    scored positions (a prefix, 0..m-1) and their scores."""
    parts: list[np.ndarray] = []
    best = np.empty(0, dtype=np.float32)  # the running top scores, ascending
    misses = done = 0
    while done < n:
        batch = np.arange(done, min(done + chunk, n))
        s = np.asarray(score(batch), dtype=np.float32)
        parts.append(s)
        done += len(batch)
        entered = len(best) < top or bool(len(s) and s.max() > best[0])
        best = np.sort(np.concatenate([best, s]))[-top:]
        misses = 0 if entered else misses + 1
        if misses >= patience:
            break
    return np.arange(done), (np.concatenate(parts) if parts else np.empty(0, np.float32))


def follow_in_order(n: int, positions: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``positions``/``scores`` of the exactly scored candidates, followed by every other of
    the ``n`` candidates in first-stage (position) order, with placeholder scores that descend
    from below the lowest exact score by ``max(1, |lowest| / 1024)`` each (0 when nothing was
    scored), so sorting by score keeps the scored first and the rest in first-stage order."""
    positions = np.asarray(positions, dtype=np.int64)
    rest = np.setdiff1d(np.arange(n, dtype=np.int64), positions, assume_unique=True)
    if not len(rest):
        return positions, scores
    floor = float(scores.min()) if len(scores) else 0.0
    step = max(1.0, abs(floor) * 2.0 ** -10)
    filler = (floor - step * np.arange(1, len(rest) + 1, dtype=np.float64)).astype(np.float32)
    return np.concatenate([positions, rest]), np.concatenate([np.asarray(scores, np.float32), filler])


@dataclass
class ScoringCounts:
    """Candidates a MaxSim stage was given and how many of them it scored exactly (cumulative;
    shared by a stage and its copies, e.g. the one a cutoff makes)."""

    candidates: int = 0
    scored: int = 0

    @property
    def share(self) -> float:
        return self.scored / self.candidates if self.candidates else 1.0


@dataclass
class _QueryScores:
    """One query's scoring: its (positions, scores), candidates seen and scored exactly, how many
    went through bound pruning and how many of those were scored, and its seconds."""

    result: tuple[np.ndarray, np.ndarray]
    seen: int
    exact: int
    tried: int
    pruned_scored: int
    seconds: float


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


T = TypeVar("T")


def in_threads(work: Callable[[int], T], items: Sequence[int], threads: int | None) -> list[T]:
    """``[work(i) for i in items]``, on ``threads`` threads (default: the available cores) when
    there is more than one item; results in ``items``' order."""
    threads = min(threads or available_cores(), len(items))
    if threads <= 1:
        return [work(i) for i in items]
    with ThreadPoolExecutor(threads, thread_name_prefix="maxsim") as pool:
        return list(pool.map(work, items))


THREADS = ParamInfo("threads", int, None, "queries scored at once (default: the CPU cores available); never "
                    "changes a score", min=1, optional=True)

# the candidates being reranked, for score_timed to read their first-stage scores (set by MaxSim.rerank)
_RERANKING: ContextVar[Candidates | None] = ContextVar("maxsim_reranking", default=None)


PARAMS = (
    ParamInfo("model", str, "minilm", "bi-encoder whose contextual token vectors are compared"),
    K,
    ParamInfo("prune", object, "auto", "rank-safe pruning by upper bounds: true, false or auto",
              choices=(True, False, "auto")),
    ParamInfo("rank", int, 32, "dimensions of the low-rank projection the bounds use", min=1),
    ParamInfo("min_ratio", float, None, "candidate pruning, in (0, 1]: score only candidates whose first-stage "
              "score is at least this share of the query's best (min-max normalised when scores can be "
              "negative); the rest follow in first-stage order", optional=True),
    ParamInfo("patience", int, None, "early termination: score in first-stage order, chunk by chunk, and stop "
              "after this many chunks in a row put nothing into the top watch; the rest follow in "
              "first-stage order", min=1, optional=True),
    ParamInfo("chunk", int, CHUNK, "early termination: candidates scored between two checks (needs patience)",
              min=1),
    ParamInfo("watch", int, None, "early termination: the top a chunk must enter (default: the stage's k "
              f"when a cutoff follows, else {WATCH}; needs patience)", min=1, optional=True),
    THREADS,
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
                 rank: int = 32, progress: Callable[[int], None] | None = None, *, min_ratio: float | None = None,
                 patience: int | None = None, chunk: int = CHUNK, watch: int | None = None,
                 threads: int | None = None) -> None:
        values = check_params(self.name, PARAMS, {"model": model, "k": k, "prune": prune, "rank": rank,
                                                  "min_ratio": min_ratio, "patience": patience, "chunk": chunk,
                                                  "watch": watch, "threads": threads})
        super().__init__(index, values["k"])
        self.model, self.prune, self.rank = values["model"], values["prune"], values["rank"]
        self.min_ratio, self.patience = values["min_ratio"], values["patience"]
        self.chunk, self.watch, self.threads = values["chunk"], values["watch"], values["threads"]
        if self.min_ratio is not None and not 0 < self.min_ratio <= 1:
            raise CascadeError(f"{self.name}: min_ratio must be in (0, 1] (got {self.min_ratio!r})")
        if self.patience is None and (self.chunk != CHUNK or self.watch is not None):
            raise CascadeError(f"{self.name}: chunk and watch only apply to early termination; set patience too")
        if self.patience is not None and self.prune is True:
            raise CascadeError(f"{self.name}: patience scores in first-stage order and prune=true in bound order; "
                               "use one of them")
        self.counts = ScoringCounts()
        self._progress = progress

    @property
    def early(self) -> bool:
        """Whether candidate pruning or early termination is on (they may change the top k)."""
        return self.min_ratio is not None or self.patience is not None

    def _early_settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.min_ratio is not None:
            out["min_ratio"] = self.min_ratio
        if self.patience is not None:
            out["patience"] = self.patience
            if self.chunk != CHUNK:
                out["chunk"] = self.chunk
            if self.watch is not None:
                out["watch"] = self.watch
        return out

    def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model} if self.model != "minilm" else {}
        if self.prune != "auto":
            out["prune"] = self.prune
        if self.threads is not None:
            out["threads"] = self.threads
        return {**out, **self._early_settings()}

    def key(self) -> tuple[Any, ...]:
        # rank-safe pruning never changes the result, so it is not part of the key; the early options do
        base = (self.name, self.model, self.k, self.index.version)
        return (*base, tuple(sorted(self._early_settings().items()))) if self.early else base

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
        if self.patience is None:  # early termination scores in first-stage order: no bounds
            self.bounds  # noqa: B018
        query_encodings(self.model).load()

    def query_tokens(self, queries: Sequence[Query]) -> list[np.ndarray]:
        return query_encodings(self.model).tokens([q.text for q in queries])

    def rerank(self, queries: Sequence[Query], candidates: Candidates) -> Candidates:
        if not self.early:
            return super().rerank(queries, candidates)
        token = _RERANKING.set(candidates)  # candidate pruning reads the first-stage scores
        try:
            return super().rerank(queries, candidates)
        finally:
            _RERANKING.reset(token)

    def score(self, queries: Sequence[Query], docs: list[np.ndarray], k: int) -> Scored:
        return self.score_timed(queries, docs, k)[0]

    def score_timed(self, queries: Sequence[Query], docs: list[np.ndarray], k: int) -> tuple[Scored, np.ndarray]:
        """Scores, and each query's seconds: its own scoring plus an equal share of encoding the
        batch's queries."""
        self.tokens  # encode the collection first if needed (not query time)
        first = self._first_stage_scores(docs)
        qtoks = self.query_tokens(queries)
        encoding = query_encodings(self.model).claim_seconds([q.text for q in queries])
        seconds = np.full(len(queries), encoding / max(len(queries), 1))
        pruning = self.patience is None and self.prune is not False and k < ALL and self.bounds is not None
        watch = self.watch if self.watch is not None else (k if k < ALL else WATCH)

        def one(i: int) -> _QueryScores:
            begin = time.perf_counter()
            keep = None if first is None else np.flatnonzero(ratio_keep(first[i], self.min_ratio))
            nums = docs[i]
            cands = nums if keep is None else nums[keep]
            tried = 0
            if self.patience is not None:
                out = self.score_in_order(qtoks[i], cands, watch)
            elif pruning and len(cands) > k:
                out, tried = self.score_pruned(qtoks[i], cands, k), len(cands)
            else:
                out = self.score_all(qtoks[i], cands)
            exact = len(out[0])
            if self.early:
                out = follow_in_order(len(nums), out[0] if keep is None else keep[out[0]], out[1])
            return _QueryScores(out, len(nums), exact, tried, exact if tried else 0, time.perf_counter() - begin)

        # one small matrix product per document: BLAS threads only add contention here; the
        # queries share the cores instead (the products and the widening release the GIL)
        with one_blas_thread():
            trial = min(AUTO_TRIAL if pruning and self.prune == "auto" else 0, len(docs))
            done = [one(i) for i in range(trial)]
            tried, scored = sum(d.tried for d in done), sum(d.pruned_scored for d in done)
            if trial and scored > AUTO_KEEP * tried:
                pruning = False  # the bounds cost more than they save on these vectors
            done += in_threads(one, range(trial, len(docs)), self.threads)
        tried, scored = sum(d.tried for d in done), sum(d.pruned_scored for d in done)
        self.pruned_share = 1 - scored / tried if tried else 0.0
        self.counts.candidates += sum(d.seen for d in done)
        self.counts.scored += sum(d.exact for d in done)
        seconds += np.array([d.seconds for d in done])
        return [d.result for d in done], seconds

    def _first_stage_scores(self, docs: list[np.ndarray]) -> list[np.ndarray] | None:
        """Each query's first-stage scores, for candidate pruning (None when it is off)."""
        if self.min_ratio is None:
            return None
        cands = _RERANKING.get()
        if cands is None or len(cands.query_ids) != len(docs):
            raise CascadeError(f"{self.name}: min_ratio needs the candidates' first-stage scores; "
                               "rerank Candidates (e.g. in a pipeline) rather than bare doc numbers")
        return [cands.score[cands.offsets[i]:cands.offsets[i + 1]] for i in range(len(docs))]

    def score_in_order(self, q: np.ndarray, nums: np.ndarray, watch: int) -> tuple[np.ndarray, np.ndarray]:
        """Early termination: exact scores for a prefix of ``nums`` (first-stage order), see
        :func:`score_in_order`."""
        where = self.tokens.slices(nums)
        rows = self.tokens.rows
        assert self.patience is not None
        return score_in_order(lambda batch: exact_scores(q, (rows(*where[j]) for j in batch.tolist())),
                              len(nums), watch, self.chunk, self.patience)

    def score_all(self, q: np.ndarray, nums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = self.tokens.rows
        scores = exact_scores(q, (rows(s, b, e) for s, b, e in self.tokens.slices(nums)))
        return np.arange(len(nums)), scores

    def score_pruned(self, q: np.ndarray, nums: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores for candidates taken in descending upper-bound order, stopping once no
        remaining candidate's bound can reach the k-th exact score (ties included); the
        positions returned are those scored."""
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
        return np.concatenate(done_pos), np.concatenate(done_scores)


def _build(ctx: Context, **params: Any) -> Pipeline:
    return MaxSim(ctx.index("maxsim"), progress=ctx.progress("encoding document tokens"), **params)


register_stage("maxsim", _build, params=PARAMS,
               help="late-interaction MaxSim rerank over stored contextual token vectors, rank-safe pruning")
