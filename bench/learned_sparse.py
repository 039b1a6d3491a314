"""Learned sparse retrieval (SPLADE) in both query modes: first stage and reranking a pool.

    python bench/learned_sparse.py                    # splade-tiny, the three datasets below
    python bench/learned_sparse.py --model DIR --datasets ../shared/datasets/scifact

First stage (``sparse`` and ``sparse(mode=inference_free)``, k=1000) on BEIR SciFact and
NFCorpus; rescoring of the TREC DL19 pool's ``runs/BM25.top100.trec`` by the SPLADE dot
product (every candidate of a query gets its exact score; candidates sharing no term with
the query keep BM25's order after the others). Indexes come from Cascade's index cache, and
the SPLADE postings are stored in them, so a second run skips the encoding. Writes
``bench/results/learned-sparse-<date>.md`` with nDCG@10, encoding docs/s and queries/s.
"""

from __future__ import annotations

import argparse
import datetime
import os
import time
from pathlib import Path

from cascade.core.types import Query, Run
from cascade.data.beir import BeirDataset
from cascade.data.trec import read_trec_run
from cascade.evaluation import evaluate
from cascade.index import representations as reps
from cascade.index.cache import cached_index
from cascade.index.index import Index
from cascade.retrieve.bm25 import BM25
from cascade.retrieve.learned_sparse import LearnedSparse, encode_sparse, representation_name
from cascade.text.analyzer import Analyzer

RESULTS = Path(__file__).resolve().parent / "results"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
FIRST_STAGE = (SHARED / "scifact", SHARED / "nfcorpus-preprocessed")
POOL = SHARED / "trec-dl19-passage-pool"
REFERENCE = {"encoded": 0.6750, "inference_free": 0.6125}  # splade-tiny rescoring BM25 top-100, glued by hand
MODES = ("encoded", "inference_free")


def open_encoded(dataset: BeirDataset, model: str) -> tuple[Index, str]:
    """The cached index of ``dataset`` with SPLADE postings, and how the encoding went."""
    index, _, _ = cached_index(dataset.name, dataset.content_hash(), lambda: dataset.corpus(skip_bad=True),
                               analyzer=Analyzer(), skip_bad=True)
    if reps.has(index, representation_name(model)):
        return index, "stored in the cached index (encoded by an earlier run)"
    start = time.perf_counter()
    index = encode_sparse(index, model)
    seconds = time.perf_counter() - start
    return index, f"{index.n_docs} docs in {seconds:.1f} s = {index.n_docs / seconds:.1f} docs/s"


def judged_queries(dataset: BeirDataset, split: str = "test") -> tuple[list[Query], dict]:
    qrels = dataset.qrels(split, skip_bad=True)
    return [q for q in dataset.queries(skip_bad=True) if q.id in qrels], qrels


def first_stage(path: Path, model: str) -> list[str]:
    dataset = BeirDataset(path)
    index, encoding = open_encoded(dataset, model)
    queries, qrels = judged_queries(dataset)
    lines = [f"### {dataset.name} ({index.n_docs} docs, {len(queries)} queries)", "",
             f"Encoding: {encoding}", "", "| pipeline | nDCG@10 | R@100 | R@1000 | queries/s |", "|---|---|---|---|---|"]
    bm25 = BM25(index).search_batch(queries)
    lines.append(_row("bm25 (reference)", evaluate(bm25.to_run(), qrels, ["nDCG@10", "R@100", "R@1000"]),
                      bm25.seconds["bm25"], len(queries)))
    for mode in MODES:
        stage = LearnedSparse(index, mode=mode, model=model)
        stage.search_batch(queries[:2])  # load the model and the kernels outside the clock
        cands = stage.search_batch(queries)
        ev = evaluate(cands.to_run(), qrels, ["nDCG@10", "R@100", "R@1000"], queries=[q.id for q in queries])
        lines.append(_row(str(stage), ev, cands.seconds["sparse"], len(queries)))
    return lines + [""]


def _row(label: str, ev, seconds: float, n: int) -> str:  # type: ignore[no-untyped-def]
    m = ev.mean
    return f"| `{label}` | {m['nDCG@10']:.4f} | {m['R@100']:.4f} | {m['R@1000']:.4f} | {n / seconds:.0f} |"


def rescore(stage: LearnedSparse, queries: list[Query], pool: Run) -> tuple[Run, float]:
    """Every pool candidate scored by the SPLADE dot product (exhaustive top-k over the whole
    pool corpus, so each candidate's exact score is known); returns the run and seconds."""
    index = stage.ensure_encoded()
    start = time.perf_counter()
    weights = stage.query_weights([q.text for q in queries])
    offsets, docs, scores = stage.rank_weighted(weights, index.n_docs)
    seconds = time.perf_counter() - start
    ids = index.doc_ids(docs)
    run: Run = {}
    for i, q in enumerate(queries):
        found = dict(zip(ids[offsets[i]:offsets[i + 1]], scores[offsets[i]:offsets[i + 1]].tolist()))
        ranked = sorted(pool.get(q.id, {}).items(), key=lambda x: -x[1])
        n = len(ranked)
        # no shared term: score 0, below every matching candidate, in BM25's order
        run[q.id] = {d: found[d] if d in found else -(r + 1) / n for r, (d, _) in enumerate(ranked)}
    return run, seconds


def rerank_pool(model: str) -> list[str]:
    dataset = BeirDataset(POOL)
    index, encoding = open_encoded(dataset, model)
    queries, qrels = judged_queries(dataset)
    pool = read_trec_run(POOL / "runs" / "BM25.top100.trec")
    queries = [q for q in queries if q.id in pool]
    base = evaluate(pool, qrels, ["nDCG@10"]).mean["nDCG@10"]
    lines = [f"### {dataset.name}: rescoring `runs/BM25.top100.trec` ({index.n_docs} docs in the pool corpus, "
             f"{len(queries)} queries)", "", f"Encoding: {encoding}", "",
             "| ranking | nDCG@10 | reference (by hand) | queries/s |", "|---|---|---|---|",
             f"| BM25 top-100 as given | {base:.4f} | | |"]
    for mode in MODES:
        stage = LearnedSparse(index, mode=mode, model=model)
        rescore(stage, queries[:2], pool)  # warm-up
        run, seconds = rescore(stage, queries, pool)
        ndcg = evaluate(run, qrels, ["nDCG@10"]).mean["nDCG@10"]
        ref = f"{REFERENCE[mode]:.4f}" if model == "splade-tiny" else ""
        lines.append(f"| BM25 top-100 >> `{stage}` | {ndcg:.4f} | {ref} | {len(queries) / seconds:.0f} |")
    return lines + [""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="splade-tiny")
    parser.add_argument("--datasets", nargs="*", type=Path, default=list(FIRST_STAGE))
    parser.add_argument("--no-pool", action="store_true", help="skip the DL19 pool rescoring")
    args = parser.parse_args()
    command = "python bench/learned_sparse.py" + ("" if args.model == "splade-tiny" else f" --model {args.model}")
    if args.datasets != list(FIRST_STAGE):
        command += " --datasets " + " ".join(str(d) for d in args.datasets)
    command += " --no-pool" if args.no_pool else ""
    start = time.perf_counter()
    parts = [f"# Learned sparse retrieval ({args.model})", "", f"Command: `{command}` "
             f"({os.cpu_count()} CPU cores; query time includes SPLADE-encoding the queries in `encoded` mode)", ""]
    if not args.no_pool:
        parts += ["## Reranking the DL19 BM25 pool", ""] + rerank_pool(args.model)
        print("\n".join(parts), flush=True)
    parts += ["## First stage (k = 1000)", ""]
    for path in args.datasets:
        parts += first_stage(path, args.model)
        print("\n".join(parts), flush=True)
    parts.append(f"Total wall time: {time.perf_counter() - start:.0f} s")
    text = "\n".join(parts) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"learned-sparse-{datetime.date.today()}.md"
    out.write_text(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
