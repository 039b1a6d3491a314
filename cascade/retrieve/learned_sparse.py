"""Learned sparse first-stage retrieval: SPLADE document vectors as impact postings.

Documents are encoded once per index with a SPLADE model (Formal et al., "SPLADE" and
"SPLADE v2", 2021; see :mod:`cascade.models.splade`) and their weights are stored in every
segment as postings over the model's vocabulary (representation kind ``sparse``): term
number = vocabulary id, impact = the document's weight. Top-k then runs in the same
rank-safe impact kernels as BM25 (:mod:`cascade.retrieve.impact_search`). Two query modes:

- ``encoded``: the query is SPLADE-encoded too; score = dot product of the two vectors.
- ``inference_free``: no model at query time; the query is its tokenizer ids, each weighted
  by an idf over the documents' own tokens (``ln(1 + (N - df + 0.5) / (df + 0.5))``, times the
  token's count), as in inference-free learned sparse retrieval (Geng et al., "Towards
  Competitive Search Relevance For Inference-Free Learned Sparse Retrievers", 2024).

>>> import tempfile, cascade
>>> from cascade.retrieve.learned_sparse import LearnedSparse
>>> idx = cascade.Index.build([cascade.Doc("d1", "insulin and diabetes"),
...                            cascade.Doc("d2", "volcanoes erupt")], tempfile.mkdtemp() + "/i")
>>> stage = LearnedSparse(idx, mode="inference_free")                  # doctest: +SKIP
>>> stage.search("what causes diabetes").to_run()["0"]                  # doctest: +SKIP
{'d1': ...}

In a pipeline string: ``sparse % 100 >> maxsim`` or ``sparse(mode=inference_free) % 100``.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from functools import cached_property
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from cascade.core.candidates import SHARED, Candidates
from cascade.core.errors import CascadeError
from cascade.core.nodes import Pipeline, Runner, as_queries, format_call
from cascade.core.params import ParamInfo, check_params, non_defaults
from cascade.core.progress import Progress
from cascade.core.registry import Context, register_stage
from cascade.core.types import Query
from cascade.filters import compile_filter
from cascade.index import bm25_formula
from cascade.index import representations as reps
from cascade.index.builders import BuildContext, RepresentationBuilder
from cascade.index.impacts import Impacts, build_blocks
from cascade.index.index import Index
from cascade.index.segment import doc_text
from cascade.models.splade import SparseVectors, SpladeEncoder
from cascade.retrieve import impact_search

if TYPE_CHECKING:
    from cascade.index.segment import Segment

ProgressFn = Callable[[int], None]
KIND = "sparse"
MODES = ("encoded", "inference_free")
DEFAULT_MODEL = "splade-tiny"
_IMPACT_PARTS = ("values", "block_indptr", "block_max", "block_last", "term_max")
PARAMS = (
    ParamInfo("mode", str, "encoded", "encoded: SPLADE-encode each query; inference_free: tokenizer ids x idf",
              choices=MODES),
    ParamInfo("model", str, DEFAULT_MODEL, "splade-tiny, a *ForMaskedLM directory or a hub id"),
    ParamInfo("k", int, 1000, "results per query", min=1),
    ParamInfo("where", str, None, "only documents matching this filter", optional=True),
)


def representation_name(model: str) -> str:
    """``splade`` for splade-tiny, else ``splade_<model directory or id>``."""
    if model == DEFAULT_MODEL:
        return "splade"
    base = Path(model).name if ("/" in model or "\\" in model) else model
    return "splade_" + (re.sub(r"[^A-Za-z0-9_]", "_", base).strip("_") or "model")


# -- storage ------------------------------------------------------------------------------


def sparse_postings(vectors: "SparseVectors", vocab_size: int) -> dict[str, np.ndarray]:
    """Document-major sparse vectors -> term-major postings with block maxima (the stored parts)."""
    n = len(vectors)
    doc = np.repeat(np.arange(n, dtype=np.int32), np.diff(vectors.offsets))
    terms = vectors.terms.astype(np.int64)
    if len(terms) and (terms.min() < 0 or terms.max() >= vocab_size):
        raise CascadeError(f"SPLADE produced term ids outside the vocabulary of {vocab_size}")
    from cascade.index.csr import csr_from_pairs  # loads numba

    # csr_from_pairs carries an int32 per posting: carry each posting's position, then gather
    position = np.arange(len(terms), dtype=np.int32)
    indptr, docs, moved = csr_from_pairs(terms, doc, position, np.arange(vocab_size, dtype=np.int64), vocab_size)
    values = np.asarray(vectors.weights, dtype=np.float32)[moved]
    imp = build_blocks(indptr, docs, values)
    return {"indptr": indptr, "docs": docs, **{p: getattr(imp, p) for p in _IMPACT_PARTS}}


def distinct_token_ids(encoder: "SpladeEncoder", texts: Sequence[str]) -> dict[str, np.ndarray]:
    """Per document, the distinct vocabulary ids of its own tokens (ragged: id_offsets + ids):
    what inference-free idf counts (SPLADE postings also count expansions, over-counting df)."""
    rows = [np.unique(np.asarray(encoder.token_ids(text), dtype=np.int32)) for text in texts]
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(r) for r in rows], out=offsets[1:])
    return {"id_offsets": offsets, "ids": np.concatenate(rows) if rows else np.zeros(0, np.int32)}


def encode_sparse(index: Index, model: str = DEFAULT_MODEL, name: str | None = None, *,
                  progress: ProgressFn | None = None, max_length: int = 256, batch_size: int = 16,
                  top_n: int | None = None) -> Index:
    """Store ``model``'s SPLADE postings in every segment lacking them, one commit per segment; returns
    the latest snapshot (which has them). Documents are encoded as the index's fields joined (title + " " +
    text); ``progress`` gets the number of documents encoded so far."""
    encoder = SpladeEncoder(model, max_length=max_length, batch_size=batch_size, top_n=top_n)
    done = [0]

    def encode_segment(seg: "Segment") -> dict[str, np.ndarray]:
        texts = [doc_text(d, index.fields) for d in seg.docstore.get(list(range(seg.n_docs)))]
        base = done[0]
        vectors = encoder.encode(texts, progress=None if progress is None else (lambda n: progress(base + n)))
        done[0] += len(texts)
        return sparse_postings(vectors, encoder.vocab_size)

    spec = {"kind": KIND, **encoder.spec()}
    reps.add_representation(index, name or representation_name(model), spec, encode_segment)
    return index.refresh()


_ENCODERS: dict[tuple[str, int, int | None], SpladeEncoder] = {}


def _shared_encoder(model: str, max_length: int, top_n: int | None) -> SpladeEncoder:
    """One SPLADE encoder per (model, max length, top n) in a process, for the builders."""
    key = (model, max_length, top_n)
    if key not in _ENCODERS:
        _ENCODERS[key] = SpladeEncoder(model, max_length=max_length, top_n=top_n)
    return _ENCODERS[key]


def _build_sparse(seg: "Segment", name: str, spec: dict[str, Any], context: BuildContext) -> dict[str, np.ndarray]:
    """The registered builder of kind ``sparse``: a segment's SPLADE postings, as the spec says."""
    encoder = _shared_encoder(str(spec["model"]), int(spec.get("max_length", 256)), spec.get("top_n"))
    texts = [doc_text(d, context.fields) for d in seg.docstore.get(list(range(seg.n_docs)))]
    return sparse_postings(encoder.encode(texts, progress=context.progress), int(spec["vocab_size"]))


def _build_token_ids(seg: "Segment", name: str, spec: dict[str, Any], context: BuildContext) -> dict[str, np.ndarray]:
    """The registered builder of kind ``token-ids``: the distinct tokenizer ids of each document,
    with the tokenizer of the representation it is ``of``."""
    of = context.representations[str(spec["of"])]
    encoder = _shared_encoder(str(of["model"]), int(of.get("max_length", 256)), of.get("top_n"))
    texts = [doc_text(d, context.fields) for d in seg.docstore.get(list(range(seg.n_docs)))]
    return distinct_token_ids(encoder, texts)


def _lacking(modules: tuple[str, ...], alternatives: bool = False) -> str | None:
    lacking = [m for m in modules if find_spec(m) is None]
    if not lacking or (alternatives and len(lacking) < len(modules)):
        return None
    return f"{' and '.join(lacking)} not installed (pip install 'cascade-ir[neural]')"


# entry points cascade.representations:sparse and :token-ids
SPARSE_BUILDER = RepresentationBuilder(_build_sparse, lambda spec: _lacking(("torch", "transformers")), encodes=True)
TOKEN_IDS_BUILDER = RepresentationBuilder(_build_token_ids,
                                          lambda spec: _lacking(("tokenizers", "transformers"), alternatives=True))


def _encode_with_bar(index: Index, model: str, name: str) -> None:
    """encode_sparse with progress on stderr (what a stage does on first use)."""
    todo = sum(seg.n_docs for seg in index.segments if not reps.has_rep(seg, name))
    with Progress(f"SPLADE-encoding {todo:,} documents with {model}", todo, unit="docs") as bar:
        encode_sparse(index, model, name, progress=bar.update)


# -- the stage ------------------------------------------------------------------------------


class LearnedSparse(Pipeline):
    """SPLADE first-stage retrieval over an :class:`~cascade.Index` snapshot, exact top-k.

    Args:
        index: the snapshot to search; documents are SPLADE-encoded into the index directory on
            first use if no commit has them yet.
        mode: ``encoded`` (SPLADE-encode each query) or ``inference_free`` (query tokens x idf).
        model: alias (``splade-tiny``), ``*ForMaskedLM`` directory or hub id.
        k: results per query.
        where: a metadata filter (string or ``cascade.F`` expression) applied inside retrieval.
    """

    name = "sparse"
    params = PARAMS
    cacheable = True

    def __init__(self, index: Index, mode: str = "encoded", model: str = DEFAULT_MODEL, k: int = 1000,
                 where: Any = None) -> None:
        values = check_params(self.name, PARAMS, {"mode": mode, "model": model, "k": k})
        if not values["model"]:
            raise CascadeError("sparse: model must be an alias (splade-tiny), a directory or a hub id")
        self.index, self.mode, self.model, self.k = index, values["mode"], values["model"], values["k"]
        expr = compile_filter(where, index.manifest.filter_fields)
        self.where = None if expr is None else str(expr)
        self.rep = representation_name(self.model)

    # -- Pipeline interface -------------------------------------------------------------------

    def key(self) -> tuple:
        return (self.name, ("mode", self.mode), ("model", self.model), ("k", self.k), ("where", self.where),
                ("index", self.index.version))

    def limit(self, k: int) -> "LearnedSparse":
        out = LearnedSparse(self.index, self.mode, self.model, min(k, self.k), self.where)
        for shared in ("_encoder", "_ready", "doc_freqs", "idf"):  # the model and the encoded index carry over
            if shared in self.__dict__:
                out.__dict__[shared] = self.__dict__[shared]
        return out

    @property
    def space(self) -> Index:
        return self.index

    def __str__(self) -> str:
        values = {"mode": self.mode, "model": self.model, "k": self.k, "where": self.where}
        return format_call(self.name, (), non_defaults(PARAMS, values))

    def execute(self, runner: Runner, queries: Sequence[Query], candidates: Candidates | None) -> Candidates:
        return self.search_batch(queries)

    # -- index side -------------------------------------------------------------------------

    @cached_property
    def _ready(self) -> tuple[list[impact_search.Postings], dict[str, Any]]:
        """Per segment of this snapshot, this model's postings (encoding them now if no commit
        has them), and the representation's spec (vocabulary size, max length, ...)."""
        def usable(spec: dict[str, Any]) -> bool:
            return spec.get("kind") == KIND and spec.get("model") == self.model

        segments, spec = reps.ensure(self.index, self.rep, usable,
                                     lambda latest: _encode_with_bar(latest, self.model, self.rep),
                                     model_encoding=True)
        postings = []
        for seg in segments:
            part = lambda p: reps.load(seg, self.rep, p)  # noqa: E731
            postings.append(impact_search.Postings(part("indptr"), part("docs"),
                                                   Impacts(*(part(p) for p in _IMPACT_PARTS)), seg.n_docs))
        return postings, spec

    def prepare(self) -> None:
        """Encode the collection if needed, load the kernels and what queries need (the model,
        or for inference-free queries the tokenizer and the idf)."""
        self._ready  # noqa: B018
        impact_search.warm_up()
        if self.mode == "inference_free":
            self.idf  # noqa: B018  (the tokenizer alone: no model at query time)
        else:
            self._encoder.model  # noqa: B018

    def ensure_encoded(self) -> None:
        """Encode the documents now (if needed) rather than on the first search."""
        self._ready  # noqa: B018

    @cached_property
    def doc_freqs(self) -> np.ndarray:
        """Per vocabulary id, the live documents of this snapshot whose own text contains that
        token (token ids stored as representation ``<name>_tokids``)."""
        name = f"{self.rep}_tokids"
        spec = {"kind": "token-ids", "of": self.rep}

        def tokenize(latest: Index) -> None:  # tokenizer only, no model: seconds, once per segment
            def segment_ids(seg: "Segment") -> dict[str, np.ndarray]:
                texts = [doc_text(d, latest.fields) for d in seg.docstore.get(list(range(seg.n_docs)))]
                return distinct_token_ids(self._encoder, texts)

            reps.add_representation(latest, name, spec, segment_ids)

        vocab = int(self._ready[1]["vocab_size"])
        segments, _ = reps.ensure(self.index, name, lambda found: found == spec, tokenize)
        df = np.zeros(vocab, dtype=np.int64)
        for own, seg in zip(self.index.segments, segments):
            offsets, ids = reps.load(seg, name, "id_offsets"), np.asarray(reps.load(seg, name, "ids"))
            if own.live is not None:  # documents deleted in this snapshot do not count
                ids = ids[np.repeat(own.live, np.diff(offsets))]
            df += np.bincount(ids, minlength=len(df))[:len(df)]
        return df

    @cached_property
    def idf(self) -> np.ndarray:
        """BM25's idf per vocabulary id over this snapshot's live documents; 0 where none has it."""
        df = self.doc_freqs
        return np.where(df > 0, bm25_formula.idf(self.index.n_docs, df), 0.0)

    # -- query side -------------------------------------------------------------------------

    @cached_property
    def _encoder(self) -> SpladeEncoder:
        return SpladeEncoder(self.model, max_length=int(self._ready[1].get("max_length", 256)), batch_size=32)

    def query_weights(self, texts: Sequence[str]) -> list[dict[int, float]]:
        """Each query as {vocabulary id: weight}, in this stage's mode."""
        if self.mode == "encoded":
            vectors = self._encoder.encode(list(texts))
            return [dict(zip(*(a.tolist() for a in vectors.row(i)))) for i in range(len(vectors))]
        idf = self.idf
        out = []
        for text in texts:
            counts = Counter(self._encoder.token_ids(text))
            out.append({t: c * float(idf[t]) for t, c in counts.items() if t < len(idf) and idf[t] > 0})
        return out

    def rank_weighted(self, weights: Sequence[dict[int, float]], k: int, *, exhaustive: bool = False,
                      threads: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top ``k`` for queries given as {vocabulary id: weight}: ragged (offsets, doc numbers, scores)."""
        postings, spec = self._ready
        vocab = int(spec["vocab_size"])
        impact_search.warm_up()
        mode = impact_search.EXHAUSTIVE if exhaustive else impact_search.RANGES
        offsets = np.zeros(len(weights) + 1, dtype=np.int64)
        np.cumsum([sum(1 for t in w if 0 <= t < vocab) for w in weights], out=offsets[1:])
        terms = np.array([t for w in weights for t in w if 0 <= t < vocab], dtype=np.int64)
        values = np.array([v for w in weights for t, v in w.items() if 0 <= t < vocab], dtype=np.float64)
        allowed = self.index.allowed_docs(self.where)  # live documents matching the filter, per segment
        queries = [impact_search.SegmentQueries(offsets, terms, values, mask) for mask in allowed]
        return impact_search.search(postings, self.index.bases, queries, k, n_queries=len(weights), compiled=True,
                                    mode=mode, threads=threads)

    def search_batch(self, queries: Sequence[Query | str], k: int | None = None,
                     progress: ProgressFn | None = None, threads: int = 1, exhaustive: bool = False) -> Candidates:
        """Top ``k`` (default: the stage's) for every query; per-query time is the batch's shared out."""
        qs = as_queries(queries)
        k = self.k if k is None else k
        if k < 1:
            raise CascadeError(f"k must be at least 1 (got {k})")
        self._ready  # encode the documents (if needed) before the clock starts
        start = time.perf_counter()
        weights = self.query_weights([q.text for q in qs])
        offsets, docs, scores = self.rank_weighted(weights, k, exhaustive=exhaustive, threads=threads)
        elapsed = time.perf_counter() - start
        if progress is not None:
            progress(len(qs))
        cands = Candidates([q.id for q in qs], offsets, docs, scores, self.index)
        cands.seconds[self.name] = elapsed
        return cands.timed(cands.seconds[self.name], SHARED)


def _build(ctx: Context, **params: Any) -> Pipeline:
    return LearnedSparse(ctx.index("sparse"), **params)


register_stage("sparse", _build, params=PARAMS, help="SPLADE learned sparse first stage (exact top k)")
