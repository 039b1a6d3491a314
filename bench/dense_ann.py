"""HNSW for the dense stage: usearch vs faiss-cpu, against exact search, on stored vectors.

    python bench/dense_ann.py ../shared/datasets/scifact [--model minilm] [--k 10]

Uses the document vectors Cascade stored for the dataset's cached index (encoding them first
if needed) and the dataset's test queries. For each library: graph build time (one thread
count for both), single-batch queries/s, and recall@k against Cascade's exact search (the
fraction of the exact top-k found). Both use M=32 links, efConstruction=200 and the same
efSearch values. Writes bench/results/dense-ann-<date>.md.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
EF_SEARCH = (32, 64, 128, 256)


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(f.tolist()) & set(e.tolist())) / len(e) for f, e in zip(found, exact)]))


def run_usearch(vectors: np.ndarray, queries: np.ndarray, k: int) -> list[tuple[str, float, int, float, float]]:
    from usearch.index import Index

    start = time.perf_counter()
    graph = Index(ndim=vectors.shape[1], metric="ip", dtype="f16", connectivity=32, expansion_add=200)
    graph.add(np.arange(len(vectors), dtype=np.uint64), vectors, threads=0)
    build = time.perf_counter() - start
    rows = []
    for ef in EF_SEARCH:
        graph.expansion_search = ef
        start = time.perf_counter()
        found = graph.search(queries, k, threads=0)
        seconds = time.perf_counter() - start
        rows.append(("usearch", build, ef, len(queries) / seconds, np.asarray(found.keys, dtype=np.int64)))
    return rows


def run_faiss(vectors: np.ndarray, queries: np.ndarray, k: int) -> list[tuple[str, float, int, float, float]]:
    import faiss

    start = time.perf_counter()
    graph = faiss.IndexHNSWFlat(vectors.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = 200
    graph.add(vectors)
    build = time.perf_counter() - start
    rows = []
    for ef in EF_SEARCH:
        graph.hnsw.efSearch = ef
        start = time.perf_counter()
        _, found = graph.search(queries, k)
        seconds = time.perf_counter() - start
        rows.append(("faiss-cpu", build, ef, len(queries) / seconds, found))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=0,
                        help="instead of document vectors, use this many stored token vectors as the corpus "
                             "and 1,000 others as queries (a larger realistic set)")
    args = parser.parse_args()

    from cascade.data.beir import BeirDataset
    from cascade.index.cache import cached_index
    from cascade.models.stored import dense_vectors
    from cascade.retrieve.dense import Dense, exact_search
    from cascade.text.analyzer import Analyzer

    ds = BeirDataset(args.dataset)
    index, _, _ = cached_index(ds.name, ds.content_hash(), ds.corpus, analyzer=Analyzer())
    stage = Dense(index, model=args.model)
    index, name = stage._stored
    if args.tokens:
        from cascade.models.stored import token_vectors

        pool = token_vectors(index.segments[0], name)[1]
        rows = np.random.default_rng(0).choice(len(pool), size=min(len(pool), args.tokens + 1000), replace=False)
        sample = np.asarray(pool[np.sort(rows)], dtype=np.float32)
        vectors, queries = sample[:-1000], sample[-1000:]
    else:
        vectors = np.concatenate([np.asarray(dense_vectors(seg, name), dtype=np.float32) for seg in index.segments])
        queries = stage.encode_queries(ds.queries())
    start = time.perf_counter()
    exact, _ = exact_search(vectors, queries, args.k)
    exact_qps = len(queries) / (time.perf_counter() - start)
    what = "token vectors" if args.tokens else "document vectors"
    lines = [f"# HNSW: usearch vs faiss-cpu on {ds.name} {what} ({args.model}, {len(vectors)} vectors, "
             f"{len(queries)} queries, k={args.k})", "",
             f"Command: `python bench/dense_ann.py {' '.join(sys.argv[1:])}`", "",
             f"Exact search (Cascade, chunked BLAS over float16): {exact_qps:,.0f} queries/s.", "",
             "| library | build s | efSearch | queries/s | recall@k |", "|---|---|---|---|---|"]
    for runner in (run_usearch, run_faiss):
        try:
            rows = runner(vectors, queries, args.k)
        except ImportError as err:
            lines.append(f"| {runner.__name__[4:]} | not installed ({err}) | | | |")
            continue
        for lib, build, ef, qps, found in rows:
            lines.append(f"| {lib} | {build:.2f} | {ef} | {qps:,.0f} | {recall(found, exact):.4f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"dense-ann-{datetime.date.today()}{'-tokens' if args.tokens else ''}.md"
    out.write_text(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
