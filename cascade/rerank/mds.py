"""Local-to-global re-ranking: global embeddings made on the fly by multidimensional scaling of
the local (token-level) similarities among a query and its top-K candidates.

Aiger, Cao, Chen & Araujo, "Global-to-Local or Local-to-Global? Enhancing Image Retrieval with
Efficient Local Search and Effective Global Re-ranking" (arXiv 2509.04351, 2025): a first stage
searches *local* features; the re-ranker then computes, for the query and its top-K results,
embeddings that respect their pairwise local similarities (multidimensional scaling), and
re-ranks by distance to the query in that space, optionally blended with the first score.

For text the local features are the contextual token vectors of the MaxSim token store
(:mod:`cascade.rerank.maxsim`). For each query, with the query and its top ``k`` candidates
as ``n = k + 1`` items of token sets ``T_i`` (unit vectors):

1. local similarity ``M[i, j] = mean over t in T_i of max over u in T_j of t . u`` (MaxSim
   normalised by the length of ``T_i``, in [-1, 1]), symmetrised ``S = (M + M^T) / 2``, ``S[i, i] = 1``;
2. squared distances ``D2 = 2 - 2 S`` (what unit vectors with those dot products would have);
3. classical MDS (Torgerson): ``B = -1/2 J D2 J`` with ``J = I - 11^T / n``; with the ``dims``
   largest eigenpairs ``(lambda, v)`` of ``B`` (negative ones clipped to 0) the coordinates are
   ``X = V sqrt(lambda)``: one batched ``numpy.linalg.eigh`` for all queries of a batch;
4. the MDS score of candidate ``j`` is ``-||X_j - X_query||``; with ``alpha`` > 0 it is blended
   with the incoming score, both min-max normalised over the query's top ``k``:
   ``alpha * incoming + (1 - alpha) * mds``.

Candidates below the top ``k`` keep their incoming order after the re-ranked ones, so the
stage changes no recall at depths beyond ``k``.

>>> import numpy as np
>>> points = np.random.default_rng(0).normal(size=(1, 6, 2))                 # 6 points in 2-d
>>> d2 = ((points[:, :, None] - points[:, None]) ** 2).sum(-1)
>>> x = classical_mds(d2, dims=2)
>>> bool(np.allclose(((x[:, :, None] - x[:, None]) ** 2).sum(-1), d2))     # distances preserved
True

In a pipeline (token vectors from the index, encoded on first use)::

    cascade.parse("bm25 % 100 >> maxsim >> mds_rerank(k=20, dims=8, alpha=0.5)", index=idx)
"""

from __future__ import annotations

import time
from functools import cached_property
from typing import Any, Callable, Sequence

import numpy as np

from cascade.core.candidates import PER_QUERY, Candidates, cut, sort_within_queries
from cascade.core.nodes import Pipeline, format_call
from cascade.core.params import ParamInfo, check_params, non_defaults
from cascade.core.registry import Context, register_stage
from cascade.core.types import Query
from cascade.index.index import Index
from cascade.models.encoders import query_encodings
from cascade.models.stored import ensure_biencoder
from cascade.rerank.base import ALL, Reranker, index_numbers
from cascade.rerank.maxsim import THREADS, DocTokens, in_threads, one_blas_thread

PARAMS = (
    ParamInfo("model", str, "minilm", "bi-encoder whose contextual token vectors give the local similarities"),
    ParamInfo("k", int, 20, "re-rank each query's top k incoming candidates (the rest keep their order below)",
              min=1),
    ParamInfo("dims", int, 8, "dimensions of the MDS embedding", min=1),
    ParamInfo("alpha", float, 0.5, "weight of the incoming score (min-max normalised over the top k); 0: MDS only",
              min=0.0, max=1.0),
    THREADS,
)


# -- kernels (numpy, vectorised over queries) ---------------------------------------------------


def classical_mds(d2: np.ndarray, dims: int) -> np.ndarray:
    """Classical (Torgerson) MDS of squared distances ``d2`` [Q, n, n]: coordinates [Q, n, dims]
    from the ``dims`` largest eigenpairs of the double-centred matrix, one batched ``eigh``.
    Negative eigenvalues (distances no Euclidean space holds) count as 0; ``dims`` beyond ``n``
    give zero columns. Points that embed exactly in ``dims`` dimensions keep their distances."""
    d2 = np.asarray(d2, dtype=np.float64)
    q, n, _ = d2.shape
    b = -0.5 * (d2 - d2.mean(axis=1, keepdims=True) - d2.mean(axis=2, keepdims=True)
                + d2.mean(axis=(1, 2), keepdims=True))
    values, vectors = np.linalg.eigh(b)  # ascending eigenvalues
    take = min(dims, n)
    values = np.clip(values[:, ::-1][:, :take], 0.0, None)
    coords = np.zeros((q, n, dims))
    coords[:, :, :take] = vectors[:, :, ::-1][:, :, :take] * np.sqrt(values)[:, None, :]
    return coords


def distances_to_first(coords: np.ndarray) -> np.ndarray:
    """[Q, n - 1]: Euclidean distance of each point to point 0 (the query), per query."""
    return np.linalg.norm(coords[:, 1:] - coords[:, :1], axis=2)


def similarity_to_d2(sim: np.ndarray) -> np.ndarray:
    """Squared distances of unit vectors with dot products ``sim`` [Q, n, n]: ``2 - 2 sim``,
    clipped at 0, zero diagonal."""
    d2 = np.clip(2.0 - 2.0 * np.asarray(sim, dtype=np.float64), 0.0, None)
    idx = np.arange(d2.shape[1])
    d2[:, idx, idx] = 0.0
    return d2


def minmax(x: np.ndarray) -> np.ndarray:
    """Each row scaled to [0, 1] (a constant row becomes 0)."""
    lo, hi = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
    span = np.where(hi > lo, hi - lo, 1.0)
    return (x - lo) / span


def mds_scores(sim: np.ndarray, incoming: np.ndarray, dims: int, alpha: float) -> np.ndarray:
    """New scores [Q, n - 1] of the candidates of item 0 from local similarities ``sim`` [Q, n, n]
    (item 0 the query) and their ``incoming`` scores [Q, n - 1]: minus the MDS distance to the
    query, min-max normalised, blended with the normalised incoming score by ``alpha``."""
    near = -distances_to_first(classical_mds(similarity_to_d2(sim), dims))
    if alpha == 0.0:
        return near
    return alpha * minmax(np.asarray(incoming, np.float64)) + (1.0 - alpha) * minmax(near)


def local_similarity(token_sets: Sequence[np.ndarray]) -> np.ndarray:
    """[n, n] symmetrised, length-normalised MaxSim among ``n`` token sets (rows unit vectors):
    ``M[i, j]`` = mean over i's tokens of their best dot product with j's tokens, ``(M + M^T) / 2``,
    diagonal 1. The upper block triangle of the Gram matrix over all tokens (one product per set
    against itself and the sets after it): a block's row maxima give ``M[i, j]``, its column
    maxima ``M[j, i]``. An empty set has similarity 0 with every other."""
    sets = [np.asarray(t, dtype=np.float32) for t in token_sets]
    n = len(sets)
    lengths = np.array([len(t) for t in sets])
    dim = next((t.shape[1] for t in sets if t.ndim == 2 and t.shape[1]), 1)
    sets = [t if len(t) else np.zeros((1, dim), np.float32) for t in sets]  # a zero token: every max is 0
    sizes = np.array([len(t) for t in sets])
    tokens = np.concatenate(sets)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    m = np.empty((n, n))
    for i in range(n):
        block = sets[i] @ tokens[starts[i]:].T  # set i against sets i..n-1
        local = starts[i:] - starts[i]
        m[i, i:] = np.maximum.reduceat(block, local, axis=1).mean(axis=0)
        m[i:, i] = np.add.reduceat(block.max(axis=0), local) / sizes[i:]
    m[lengths == 0] = 0.0
    sim = (m + m.T) / 2.0
    sim[np.arange(n), np.arange(n)] = 1.0
    return sim


def unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


# -- the stage ----------------------------------------------------------------------------------


class MDSRerank(Reranker):
    """Re-rank each query's top ``k`` by distance to the query in an MDS embedding of their
    token-level (MaxSim) similarities, blended with the incoming score by ``alpha``."""

    name = "mds_rerank"
    params = PARAMS

    def __init__(self, index: Index, model: str = "minilm", k: int = 20, dims: int = 8, alpha: float = 0.5,
                 threads: int | None = None, progress: Callable[[int], None] | None = None) -> None:
        self.values = check_params(self.name, PARAMS, {"model": model, "k": k, "dims": dims, "alpha": alpha,
                                                       "threads": threads})
        super().__init__(index, None)
        self.model, self.depth = self.values["model"], self.values["k"]
        self.dims, self.alpha, self.threads = self.values["dims"], self.values["alpha"], self.values["threads"]
        self._progress = progress

    def settings(self) -> dict[str, Any]:
        return non_defaults(PARAMS, self.values)

    def key(self) -> tuple[Any, ...]:
        scoring = {name: value for name, value in self.values.items() if name != "threads"}  # threads change no score
        return (self.name, tuple(sorted(scoring.items())), self.k, self.index.version)

    def __str__(self) -> str:
        text = format_call(self.name, params=self.settings())
        return text if self.k == ALL else f"{text} % {self.k}"

    @cached_property
    def tokens(self) -> DocTokens:
        segments, name = ensure_biencoder(self.index, self.model, tokens=True, progress=self._progress)
        return DocTokens(segments, self.index.bases, name)

    def prepare(self) -> None:
        """Encode the collection's tokens if needed and load the model."""
        self.tokens  # noqa: B018
        query_encodings(self.model).load()

    def rerank(self, queries: Sequence[Query], candidates: Candidates) -> Candidates:
        by_id = {q.id: q for q in queries}
        ordered = [by_id[qid] if qid in by_id else Query(qid, "") for qid in candidates.query_ids]
        nums = index_numbers(candidates, self.index)
        bounds = candidates.offsets
        heads = [min(self.depth, int(bounds[i + 1] - bounds[i])) for i in range(len(ordered))]
        self.tokens  # noqa: B018  (encode the collection first if needed: not query time)
        texts = [q.text for q, h in zip(ordered, heads) if h > 1]
        encoded = iter(query_encodings(self.model).tokens(texts))
        qtoks = [next(encoded) if h > 1 else None for h in heads]
        seconds = np.full(len(ordered), query_encodings(self.model).claim_seconds(texts) / max(len(ordered), 1))

        def one(i: int) -> tuple[np.ndarray | None, float]:
            start = time.perf_counter()
            sim = self.similarity(qtoks[i], nums[bounds[i]:bounds[i] + heads[i]]) if heads[i] > 1 else None
            return sim, time.perf_counter() - start

        # small products per query: one BLAS thread each, the queries share the cores (as in MaxSim)
        with one_blas_thread():
            done = in_threads(one, range(len(ordered)), self.threads)
        sims = [sim for sim, _ in done]
        seconds += np.array([spent for _, spent in done])
        out = self._assemble(candidates, nums, self._head_scores(sims, candidates, heads, seconds))
        if self.k != ALL:
            out = cut(out, self.k)
        out.seconds[self.name] = float(seconds.sum())
        return out.timed(seconds, PER_QUERY)

    def _assemble(self, candidates: Candidates, nums: np.ndarray, heads: list[np.ndarray]) -> Candidates:
        """Each query's re-scored head (scores in [0, 1]) above its tail in incoming order (-1, -2, ...)."""
        counts = np.diff(candidates.offsets)
        scores = [np.concatenate([head, -1.0 - np.arange(n - len(head))]) for head, n in zip(heads, counts)]
        qidx = np.repeat(np.arange(len(counts)), counts)
        score = np.concatenate(scores) if scores else np.empty(0)
        return sort_within_queries(candidates.query_ids, qidx, nums.astype(np.int32), score.astype(np.float32),
                                   self.index)

    def similarity(self, query_tokens: np.ndarray, nums: np.ndarray) -> np.ndarray:
        """The local similarity matrix of a query (its token vectors) and the documents ``nums``."""
        rows = self.tokens.rows
        docs = [rows(s, b, e) for s, b, e in self.tokens.slices(nums)]
        return local_similarity([unit_rows(query_tokens)] + [unit_rows(d) for d in docs])

    def _head_scores(self, sims: list[np.ndarray | None], candidates: Candidates, heads: list[int],
                     seconds: np.ndarray) -> list[np.ndarray]:
        """Scores in [0, 1] for each query's top ``heads[i]`` (kept as they come when fewer than
        two), one batched MDS per group of queries with the same number of candidates."""
        bounds = candidates.offsets
        out: list[np.ndarray] = [np.ones(h) for h in heads]
        for h in sorted({h for h in heads if h > 1}):
            group = [i for i, hh in enumerate(heads) if hh == h]
            start = time.perf_counter()
            incoming = np.stack([candidates.score[bounds[i]:bounds[i] + h] for i in group])
            new = minmax(mds_scores(np.stack([sims[i] for i in group]), incoming, self.dims, self.alpha))
            seconds[group] += (time.perf_counter() - start) / len(group)
            for row, i in zip(new, group):
                out[i] = row
        return out


def _build(ctx: Context, **params: Any) -> Pipeline:
    return MDSRerank(ctx.index("mds_rerank"), progress=ctx.progress("encoding document tokens"), **params)


register_stage("mds_rerank", _build, params=PARAMS,
               help="local-to-global re-rank: MDS embedding of the top k's token-level similarities")
