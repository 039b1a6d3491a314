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
import sys
import time
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from cascade.data.types import Query
from cascade.errors import CascadeError
from cascade.index import representations as reps
from cascade.index.csr import csr_from_pairs
from cascade.index.impacts import Impacts, build_blocks
from cascade.index.index import Index
from cascade.index.segment import doc_text
from cascade.pipeline.base import Pipeline, format_call
from cascade.pipeline.candidates import Candidates
from cascade.retrieve import impact_search

if TYPE_CHECKING:
    from cascade.index.segment import Segment
    from cascade.models.splade import SparseVectors, SpladeEncoder
    from cascade.pipeline.registry import Context

ProgressFn = Callable[[int], None]
KIND = "sparse"
MODES = ("encoded", "inference_free")
DEFAULT_MODEL = "splade-tiny"
_IMPACT_PARTS = ("values", "block_indptr", "block_max", "block_last", "term_max")


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
    """Store ``model``'s SPLADE postings in every segment lacking them; returns the reopened index.

    Documents are encoded as the index's fields joined (title + " " + text); ``progress``
    gets the number of documents encoded so far."""
    from cascade.models.splade import SpladeEncoder

    encoder = SpladeEncoder(model, max_length=max_length, batch_size=batch_size, top_n=top_n)
    done = [0]

    def encode_segment(seg: "Segment") -> dict[str, np.ndarray]:
        texts = [doc_text(d, index.fields) for d in seg.docstore.get(list(range(seg.n_docs)))]
        base = done[0]
        vectors = encoder.encode(texts, progress=None if progress is None else (lambda n: progress(base + n)))
        done[0] += len(texts)
        return sparse_postings(vectors, encoder.vocab_size)

    spec = {"kind": KIND, **encoder.spec()}
    return reps.add_representation(index, name or representation_name(model), spec, encode_segment)


def _encode_with_bar(index: Index, model: str, name: str) -> Index:
    """encode_sparse with a rich progress bar on stderr (what a stage does on first use)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    todo = sum(seg.n_docs for seg in index.segments
               if not any(f.startswith(f"{reps.PREFIX}{name}.") for f in seg.entry.files))
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(file=sys.stderr), transient=True) as bar:
        task = bar.add_task(f"SPLADE-encoding {todo} documents ({model})", total=todo)
        return encode_sparse(index, model, name, progress=lambda n: bar.update(task, completed=n))


# -- the stage ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _VocabView:
    """One segment's SPLADE postings, shaped like a Segment for :func:`impact_search.search`."""

    indptr: np.ndarray
    docs: np.ndarray
    n_docs: int
    term_numbers: "_Identity"


class _Identity:
    """Vocabulary ids are the term numbers: ``get(id)`` is ``id`` when inside the vocabulary."""

    def __init__(self, size: int) -> None:
        self.size = size

    def get(self, term: int, default: Any = None) -> Any:
        return term if 0 <= term < self.size else default


class LearnedSparse(Pipeline):
    """SPLADE first-stage retrieval over an :class:`~cascade.Index`, exact top-k.

    Args:
        index: the index to search; documents are SPLADE-encoded into it on first use if needed.
        mode: ``encoded`` (SPLADE-encode each query) or ``inference_free`` (query tokens x idf).
        model: alias (``splade-tiny``), ``*ForMaskedLM`` directory or hub id.
        k: results per query.
        where: a metadata filter (string or ``cascade.F`` expression) applied inside retrieval.
    """

    name = "sparse"
    cacheable = True

    def __init__(self, index: Index, mode: str = "encoded", model: str = DEFAULT_MODEL, k: int = 1000,
                 where: Any = None) -> None:
        from cascade.filters import compile_filter

        if mode not in MODES:
            raise CascadeError(f"sparse: unknown mode {mode!r}; choose encoded or inference_free")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise CascadeError(f"k must be a positive integer (got {k!r})")
        if not isinstance(model, str) or not model:
            raise CascadeError("sparse: model must be an alias (splade-tiny), a directory or a hub id")
        self.index, self.mode, self.model, self.k = index, mode, model, k
        expr = compile_filter(where, index.manifest.filter_fields)
        self.where = None if expr is None else str(expr)
        self.rep = representation_name(model)
        self._version = index.version  # the key stays put when the documents get encoded later

    # -- Pipeline interface -------------------------------------------------------------------

    def key(self) -> tuple:
        return (self.name, ("mode", self.mode), ("model", self.model), ("k", self.k), ("where", self.where),
                ("index", self._version))

    @property
    def depth(self) -> int:  # type: ignore[override]
        return self.k

    def with_depth(self, k: int) -> "LearnedSparse":
        out = type(self)(self.index, self.mode, self.model, k, self.where)
        out._version = self._version
        for shared in ("_encoder", "_ready"):  # the model and the encoded index carry over
            if shared in self.__dict__:
                out.__dict__[shared] = self.__dict__[shared]
        return out

    @property
    def space(self) -> Index:
        return self.index

    def params(self) -> dict[str, Any]:
        defaults = {"mode": "encoded", "model": DEFAULT_MODEL, "k": 1000, "where": None}
        current = {"mode": self.mode, "model": self.model, "k": self.k, "where": self.where}
        return {n: v for n, v in current.items() if v != defaults[n]}

    def __str__(self) -> str:
        return format_call(self.name, (), self.params())

    def execute(self, executor: object, queries: Sequence[Query], candidates: Candidates | None) -> Candidates:
        return self.search_batch(queries)

    # -- index side -------------------------------------------------------------------------

    @cached_property
    def _ready(self) -> tuple[Index, list[_VocabView], list[Impacts]]:
        """The index with this model's postings (encoding them now if missing), per segment."""
        index = self._encoded_index()
        spec = reps.spec(index, self.rep)
        if spec.get("kind") != KIND or spec.get("model") != self.model:
            raise CascadeError(f"{index.path}: representation {self.rep!r} holds {spec}, "
                               f"not SPLADE postings of {self.model!r}")
        vocab = int(spec["vocab_size"])
        views, impacts = [], []
        for seg in index.segments:
            part = lambda p: reps.load(seg, self.rep, p)  # noqa: E731
            views.append(_VocabView(part("indptr"), part("docs"), seg.n_docs, _Identity(vocab)))
            impacts.append(Impacts(*(part(p) for p in _IMPACT_PARTS)))
        return index, views, impacts

    def _encoded_index(self) -> Index:
        if reps.has(self.index, self.rep):
            return self.index
        fresh = Index.open(self.index.path)  # another stage may have encoded it since
        if reps.has(fresh, self.rep):
            return fresh
        return _encode_with_bar(fresh, self.model, self.rep)

    def ensure_encoded(self) -> Index:
        """Encode the documents now (if needed) rather than on the first search; the index."""
        return self._ready[0]

    @cached_property
    def doc_freqs(self) -> np.ndarray:
        """Per vocabulary id, the live documents whose own text contains that token, over all
        segments (token ids stored as representation ``<name>_tokids``)."""
        index = self._ready[0]
        name = f"{self.rep}_tokids"
        if not reps.has(index, name):  # tokenizer only, no model: seconds, once per segment
            def tokenize(seg: "Segment") -> dict[str, np.ndarray]:
                texts = [doc_text(d, index.fields) for d in seg.docstore.get(list(range(seg.n_docs)))]
                return distinct_token_ids(self._encoder, texts)

            index = reps.add_representation(index, name, {"kind": "token-ids", "of": self.rep}, tokenize)
        df = np.zeros(self._encoder.vocab_size, dtype=np.int64)
        for seg in index.segments:
            offsets, ids = reps.load(seg, name, "id_offsets"), np.asarray(reps.load(seg, name, "ids"))
            if seg.live is not None:  # deleted documents do not count
                lengths = np.diff(offsets)
                ids = ids[np.repeat(seg.live, lengths)]
            df += np.bincount(ids, minlength=len(df))[:len(df)]
        return df

    @cached_property
    def idf(self) -> np.ndarray:
        """ln(1 + (N - df + 0.5) / (df + 0.5)) per vocabulary id; 0 where no document has it."""
        df = self.doc_freqs.astype(np.float64)
        n = float(self._ready[0].n_docs)
        return np.where(df > 0, np.log1p((n - df + 0.5) / (df + 0.5)), 0.0)

    # -- query side -------------------------------------------------------------------------

    @cached_property
    def _encoder(self) -> "SpladeEncoder":
        from cascade.models.splade import SpladeEncoder

        spec = reps.spec(self._ready[0], self.rep)
        return SpladeEncoder(self.model, max_length=int(spec.get("max_length", 256)), batch_size=32)

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
        index, views, impacts = self._ready
        impact_search.warm_up()
        mode = impact_search.EXHAUSTIVE if exhaustive else impact_search.RANGES
        allowed = index.allowed_docs(self.where)  # live documents matching the filter, per segment
        return impact_search.search(views, impacts, index.bases, weights, k, mode=mode,  # type: ignore[arg-type]
                                    threads=threads, allowed=allowed)

    def search_batch(self, queries: Sequence[Query], k: int | None = None,
                     progress: ProgressFn | None = None, threads: int = 1, exhaustive: bool = False) -> Candidates:
        """Top ``k`` (default: the stage's) for every query; per-query time is the batch's shared out."""
        k = self.k if k is None else k
        if k < 1:
            raise CascadeError(f"k must be at least 1 (got {k})")
        self._ready  # encode the documents (if needed) before the clock starts
        start = time.perf_counter()
        weights = self.query_weights([q.text for q in queries])
        offsets, docs, scores = self.rank_weighted(weights, k, exhaustive=exhaustive, threads=threads)
        elapsed = time.perf_counter() - start
        if progress is not None:
            progress(len(queries))
        # doc numbers are those of self.index (encoding adds files, never moves documents)
        cands = Candidates([q.id for q in queries], offsets, docs, scores, self.index)
        cands.seconds[self.name] = elapsed
        cands.query_seconds = np.full(len(queries), elapsed / max(len(queries), 1))
        return cands


def build_sparse_stage(ctx: "Context", *args: Any, **params: Any) -> Pipeline:
    """The ``sparse`` stage of pipeline strings: ``sparse(mode=encoded|inference_free, model=..., k=...)``."""
    if args:
        raise CascadeError("sparse takes only name=value parameters: sparse(mode=inference_free, model=..., k=...)")
    unknown = sorted(set(params) - {"mode", "model", "k", "where"})
    if unknown:
        raise CascadeError(f"sparse: unknown parameter(s) {', '.join(unknown)}; it takes mode, model, k, where")
    return LearnedSparse(ctx.index("sparse"), **params)
