"""BM25 effectiveness on the shared collections, Cascade vs bm25s, side by side.

    python bench/bm25_quality.py ../shared/datasets/{scifact,vaswani,cranfield,adi,nfcorpus-preprocessed}

For each dataset: nDCG@10 and R@100 of Cascade's BM25 (k1=0.9, b=0.4, title + text,
Snowball English stemming) with Lucene's stop set (the default) and with Snowball's larger
stop set, and of bm25s (method="lucene", same parameters, its "en" stop set) when it is
installed (`pip install -e '.[bench]'`). Writes bench/results/bm25-quality-<date>.md.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from pathlib import Path

import cascade
from cascade.core.types import ReadReport
from cascade.evaluation import evaluate
from cascade.retrieve.bm25 import BM25

METRICS = ["nDCG@10", "R@100"]
RESULTS = Path(__file__).resolve().parent / "results"


def cascade_bm25(dataset: cascade.BeirDataset, stopwords: str) -> tuple[dict, float]:
    queries = [q for q in dataset.queries() if q.id in dataset.qrels()]
    start = time.perf_counter()
    idx = cascade.Index.build(dataset.corpus(skip_bad=True, report=ReadReport()), Path(tempfile.mkdtemp()) / "i",
                              analyzer=cascade.Analyzer(stopwords=stopwords))
    run = BM25(idx, k=1000).search_batch(queries).to_run()
    seconds = time.perf_counter() - start
    return evaluate(run, dataset.qrels(), METRICS, queries=[q.id for q in queries]).mean, seconds


def bm25s_bm25(dataset: cascade.BeirDataset) -> tuple[dict, float] | None:
    try:
        import bm25s
        import Stemmer
    except ImportError:
        return None
    docs = list(dataset.corpus(skip_bad=True, report=ReadReport()))
    queries = [q for q in dataset.queries() if q.id in dataset.qrels()]
    stemmer = Stemmer.Stemmer("english")
    start = time.perf_counter()
    retriever = bm25s.BM25(method="lucene", k1=0.9, b=0.4)
    retriever.index(bm25s.tokenize([f"{d.title} {d.text}" for d in docs], stopwords="en", stemmer=stemmer,
                                   show_progress=False), show_progress=False)
    tokens = bm25s.tokenize([q.text for q in queries], stopwords="en", stemmer=stemmer, show_progress=False)
    k = min(1000, len(docs))
    results, scores = retriever.retrieve(tokens, k=k, show_progress=False)
    seconds = time.perf_counter() - start
    run = {q.id: {docs[i].id: float(s) for i, s in zip(r, sc) if s > 0} for q, r, sc in zip(queries, results, scores)}
    return evaluate(run, dataset.qrels(), METRICS, queries=[q.id for q in queries]).mean, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="+", type=Path)
    parser.add_argument("--no-write", action="store_true", help="print only; do not write bench/results")
    args = parser.parse_args()
    rows = ["| dataset | system | nDCG@10 | R@100 | index+search s |", "|---|---|---|---|---|"]
    for path in args.datasets:
        dataset = cascade.BeirDataset(path)
        systems = {"cascade (lucene stop set, default)": cascade_bm25(dataset, "english"),
                   "cascade (snowball stop set)": cascade_bm25(dataset, "snowball"),
                   "bm25s 'lucene'": bm25s_bm25(dataset)}
        for name, result in systems.items():
            if result is None:
                continue
            m, seconds = result
            rows.append(f"| {dataset.name} | {name} | {m['nDCG@10']:.4f} | {m['R@100']:.4f} | {seconds:.2f} |")
            print(rows[-1], flush=True)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / f"bm25-quality-{datetime.date.today()}.md"
        command = "python bench/bm25_quality.py " + " ".join(str(p) for p in args.datasets)
        out.write_text(f"# BM25 quality, Cascade vs bm25s\n\nCommand: `{command}`\n\n" + "\n".join(rows) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
