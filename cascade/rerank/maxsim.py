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
unpruned scoring. ``prune="auto"`` (the default) tries it on the first queries of a batch and
keeps it only while it skips enough candidates to pay for the bounds: with the contextual
token vectors of MiniLM, which are not trained for late interaction, the bounds are loose and
skip almost nothing (``bench/neural.py --speed``; ``bench/maxsim_pruning.py`` measures the
slack against the score gaps). ``prune=True`` / ``False`` force it.

>>> pipe = cascade.parse("bm25 % 100 >> maxsim % 10", index=idx)   # doctest: +SKIP
"""

from __future__ import annotations

import time
import warnings
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np

from cascade.core.nodes import Pipeline
from cascade.core.params import ParamInfo, check_params
from cascade.core.registry import Context, register_stage
from cascade.core.types import Query
from cascade.index.index import Index
from cascade.models.stored import ensure_biencoder, token_vectors
from cascade.rerank.base import ALL, K, Reranker, Scored
from cascade.rerank.maxsim_bounds import TokenBounds

if TYPE_CHECKING:
    from cascade.index.segment import Segment

CHUNK = 8  # candidates scored exactly between two checks of the stopping rule
AUTO_TRIAL = 8  # prune="auto": queries tried with bounds before deciding
AUTO_KEEP = 0.7  # ... and kept on only if at most this share of candidates had to be scored


def maxsim(q: np.ndarray, tokens: np.ndarray) -> np.float32:
    """MaxSim of query token vectors ``q`` [m, d] (float32) with one document's ``tokens`` [t, d].

    One BLAS call per document, so a document's score never depends on which other documents
    were scored with it: pruned and unpruned reranking agree to the last bit."""
    if len(tokens) == 0:
        return np.float32(0.0)
    return (q @ np.asarray(tokens, dtype=np.float32).T).max(axis=1).sum(dtype=np.float32)


def exact_scores(q: np.ndarray, documents: Iterable[np.ndarray]) -> np.ndarray:
    """float32 exact MaxSim of ``q`` with each document's token rows: through torch when it is
    installed (its float16-to-float32 conversion is vectorised, about 3x faster per document
    than numpy's), else :func:`maxsim`. Either way one product per document."""
    try:
        import torch
    except ImportError:
        return np.array([maxsim(q, tokens) for tokens in documents], dtype=np.float32)
    qt = torch.from_numpy(np.ascontiguousarray(q, dtype=np.float32))
    out = []
    with warnings.catch_warnings():  # memory-mapped rows are read-only; torch only reads them
        warnings.simplefilter("ignore", UserWarning)
        for tokens in documents:
            if len(tokens) == 0:
                out.append(0.0)
            else:
                out.append((qt @ torch.from_numpy(tokens).to(torch.float32).T).amax(dim=1).sum().item())
    return np.array(out, dtype=np.float32)


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
    def encoder(self) -> Any:
        from cascade.models.encoders import shared_encoder

        return shared_encoder(self.model)

    @cached_property
    def bounds(self) -> TokenBounds:
        segments, name = self._stored
        return TokenBounds.of(self.index, name, self.rank)

    def query_tokens(self, queries: Sequence[Query]) -> list[np.ndarray]:
        out = self.encoder.encode([q.text for q in queries], tokens=True)
        return [out.tokens_of(i).astype(np.float32) for i in range(len(queries))]

    def score(self, queries: Sequence[Query], docs: list[np.ndarray], k: int) -> Scored:
        return self.score_timed(queries, docs, k)[0]

    def score_timed(self, queries: Sequence[Query], docs: list[np.ndarray], k: int) -> tuple[Scored, np.ndarray]:
        """Scores, and each query's seconds: its own scoring plus an equal share of encoding the
        batch's queries."""
        from threadpoolctl import threadpool_limits

        self.tokens  # encode the collection first if needed (not query time)
        start = time.perf_counter()
        qtoks = self.query_tokens(queries)
        seconds = np.full(len(queries), (time.perf_counter() - start) / max(len(queries), 1))
        pruning = self.prune is not False and k < ALL
        results = []
        tried = scored = 0
        # one small matrix product per document: BLAS threads only add contention here
        with threadpool_limits(1, user_api="blas"):
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
