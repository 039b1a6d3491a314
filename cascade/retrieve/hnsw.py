"""Approximate dense search: one HNSW graph per segment (usearch), stored in the index.

HNSW: Malkov & Yashunin, "Efficient and robust approximate nearest neighbor search using
Hierarchical Navigable Small World graphs" (TPAMI 2018). usearch was picked over faiss-cpu by
``bench/dense_ann.py`` (build time, queries/s and recall@10 against exact search). The graph
is built on first use from the stored float16 vectors and saved as representation
``<name>_hnsw``; returned scores are exact dot products with the stored vectors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cascade.errors import MissingDependency
from cascade.index import representations as reps

if TYPE_CHECKING:
    from cascade.index.index import Index
    from cascade.index.segment import Segment

CONNECTIVITY = 32
EXPANSION_ADD = 200
_LOADED: dict[tuple[str, str, str], object] = {}


def _usearch():  # type: ignore[no-untyped-def]
    try:
        from usearch.index import Index as UIndex
    except ImportError:
        raise MissingDependency("usearch", "neural", "approximate dense search (method=hnsw)") from None
    return UIndex


def build_graph(vectors: np.ndarray) -> np.ndarray:
    """Serialised HNSW graph over ``vectors`` (inner product), as a uint8 array."""
    graph = _usearch()(ndim=vectors.shape[1], metric="ip", dtype="f16", connectivity=CONNECTIVITY,
                       expansion_add=EXPANSION_ADD)
    if len(vectors):
        graph.add(np.arange(len(vectors), dtype=np.uint64), np.asarray(vectors, dtype=np.float32), threads=0)
    return np.frombuffer(bytes(graph.save()), dtype=np.uint8)


def ensure_graphs(index: "Index", name: str) -> tuple["Index", str]:
    graph_name = f"{name}_hnsw"
    if not reps.has(index, graph_name):
        def encode_segment(seg: "Segment") -> dict[str, np.ndarray]:
            return {"graph": build_graph(reps.load(seg, name, "dense"))}

        index = reps.add_representation(index, graph_name, {"kind": "hnsw", "of": name,
                                                            "connectivity": CONNECTIVITY}, encode_segment)
    return index, graph_name


def _graph(seg: "Segment", graph_name: str) -> object:
    key = (str(seg.dir), graph_name, seg.entry.files and next(
        (f for f in seg.entry.files if f.startswith(f"rep-{graph_name}.")), ""))
    if key not in _LOADED:
        _LOADED[key] = _usearch().restore(bytes(reps.load(seg, graph_name, "graph")))
    return _LOADED[key]


def hnsw_search(seg: "Segment", name: str, graph_name: str, queries: np.ndarray, k: int,
                ef: int) -> tuple[np.ndarray, np.ndarray]:
    """(segment-local doc numbers [Q, k'], exact scores) of an approximate top-k per query."""
    graph = _graph(seg, graph_name)
    k = min(k, seg.n_docs)
    graph.expansion_search = max(ef, k)  # type: ignore[attr-defined]
    found = graph.search(np.asarray(queries, dtype=np.float32), k, threads=0)  # type: ignore[attr-defined]
    keys = np.asarray(found.keys, dtype=np.int64).reshape(len(queries), -1)
    counts = np.asarray(found.counts).reshape(-1)
    vectors = reps.load(seg, name, "dense")
    docs = np.zeros((len(queries), k), np.int64)
    scores = np.full((len(queries), k), -np.inf, np.float32)
    for i in range(len(queries)):
        got = np.unique(keys[i, :counts[i]])  # sorted by doc number: exact ties resolve low-first
        exact = np.asarray(vectors[got], dtype=np.float32) @ queries[i]
        order = np.lexsort((got, -exact))
        docs[i, :len(got)] = got[order]
        scores[i, :len(got)] = exact[order]
    return docs, scores

