"""Approximate dense search: one HNSW graph per segment (faiss), stored in the index.

HNSW: Malkov & Yashunin, "Efficient and robust approximate nearest neighbor search using
Hierarchical Navigable Small World graphs" (TPAMI 2018). faiss-cpu was picked over usearch by
``bench/dense_ann.py``: on 200k MiniLM token vectors it built the graph 1.8x faster and answered
1.6-2.9x more queries/s at the same recall@10 (bench/results/dense-ann-*.md). The graph
is built on first use from the stored float16 vectors and saved as representation
``<name>_hnsw``; returned scores are exact dot products with the stored vectors. ``BUILDER`` is
registered for kind ``hnsw``, so new and merged segments get their graph in the commit that
writes them.
"""

from __future__ import annotations

from importlib.util import find_spec
from typing import TYPE_CHECKING, Any

import numpy as np

from cascade.core.errors import MissingDependency
from cascade.index import representations as reps
from cascade.index.builders import BuildContext, RepresentationBuilder
from cascade.retrieve.dense_exact import exact_search

if TYPE_CHECKING:
    from cascade.index.index import Index
    from cascade.index.segment import Segment

CONNECTIVITY = 32
EXPANSION_ADD = 200
_LOADED: dict[tuple[str, str], object] = {}  # (segment dir, graph file) -> loaded graph


def _faiss():  # type: ignore[no-untyped-def]
    try:
        import faiss
    except ImportError:
        raise MissingDependency("faiss-cpu", "neural", "approximate dense search (method=hnsw)") from None
    return faiss


def build_graph(vectors: np.ndarray) -> np.ndarray:
    """Serialised HNSW graph (float16 vectors, inner product) over ``vectors``, as a uint8 array."""
    faiss = _faiss()
    graph = faiss.IndexHNSWSQ(vectors.shape[1], faiss.ScalarQuantizer.QT_fp16, CONNECTIVITY,
                              faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = EXPANSION_ADD
    data = np.ascontiguousarray(vectors, dtype=np.float32)
    graph.train(data)
    if len(data):
        graph.add(data)
    return faiss.serialize_index(graph)


def ensure_graphs(index: "Index", segments: list["Segment"], name: str) -> tuple[list["Segment"], str]:
    """``index``'s segments with an HNSW graph over representation ``name``'s dense vectors
    (built and stored first where missing), and the graph representation's name."""
    graph_name = f"{name}_hnsw"
    spec = {"kind": "hnsw", "of": name, "connectivity": CONNECTIVITY}

    def encode(latest: "Index") -> None:
        _faiss()  # a missing faiss is named as the stage's missing dependency
        reps.add_representation(latest, graph_name, spec, reporter=reps.silent)  # by BUILDER

    return reps.ensure(index, graph_name, lambda found: found == spec, encode)[0], graph_name


def _build(seg: "Segment", name: str, spec: dict[str, Any], context: BuildContext) -> dict[str, np.ndarray]:
    """The registered builder of kind ``hnsw``: the graph over the dense vectors of ``spec["of"]``."""
    return {"graph": build_graph(reps.load(seg, str(spec["of"]), "dense"))}


def _missing(spec: dict[str, Any]) -> str | None:
    return None if find_spec("faiss") is not None else "faiss is not installed (pip install 'cascade-ir[neural]')"


BUILDER = RepresentationBuilder(_build, _missing)  # entry point cascade.representations:hnsw


def _graph(seg: "Segment", graph_name: str) -> object:
    # the file name carries its commit's generation, so a rebuilt graph gets a new key
    key = (str(seg.dir), next((f for f in seg.entry.files if f.startswith(f"{reps.PREFIX}{graph_name}.")), ""))
    if key not in _LOADED:
        _LOADED[key] = _faiss().deserialize_index(np.ascontiguousarray(reps.load(seg, graph_name, "graph")))
    return _LOADED[key]


def hnsw_search(seg: "Segment", name: str, graph_name: str, queries: np.ndarray, k: int, ef: int,
                allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(segment-local doc numbers [Q, k'], exact scores) of an approximate top-k per query.

    ``allowed`` (bool[n_docs]) filters inside the graph search; a query that finds fewer than
    min(k, allowed documents) that way (a very selective filter cuts the graph apart) is
    answered by exact search over the allowed documents instead."""
    faiss = _faiss()
    graph = _graph(seg, graph_name)
    n_allowed = seg.n_docs if allowed is None else int(allowed.sum())
    k = min(k, n_allowed)
    if k == 0:
        return np.zeros((len(queries), 0), np.int64), np.zeros((len(queries), 0), np.float32)
    params = faiss.SearchParametersHNSW(efSearch=max(ef, k))
    if allowed is not None:
        bits = np.packbits(allowed.astype(np.uint8), bitorder="little")
        selector = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bits))  # bits must outlive the search
        params.sel = selector
    _, keys = graph.search(np.ascontiguousarray(queries, dtype=np.float32), k, params=params)  # type: ignore[attr-defined]
    vectors = reps.load(seg, name, "dense")
    docs = np.zeros((len(queries), k), np.int64)
    scores = np.full((len(queries), k), -np.inf, np.float32)
    for i in range(len(queries)):
        got = np.unique(keys[i][keys[i] >= 0])  # sorted by doc number: exact ties resolve low-first
        if len(got) < k:
            exact_docs, exact_scores = exact_search(vectors, queries[i:i + 1], k, allowed)
            docs[i], scores[i] = exact_docs[0], exact_scores[0]
            continue
        exact = np.asarray(vectors[got], dtype=np.float32) @ queries[i]
        order = np.lexsort((got, -exact))
        docs[i, :len(got)] = got[order]
        scores[i, :len(got)] = exact[order]
    return docs, scores

