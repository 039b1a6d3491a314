"""BM25 effectiveness under the analyzer's text options: accent folding, symbol suffixes, CJK bigrams.

    python bench/analysis_quality.py ../shared/datasets/{scifact,nfcorpus-preprocessed,vaswani,cranfield,adi,trec-dl19-passage-pool}

For each dataset (BEIR layout with qrels/test.tsv): Cascade's BM25 (k1=0.9, b=0.4, title +
text, Lucene stop set, Snowball English, k=1000) with the analyzer as it was before these
options (no accent folding), with folding (the default for new indexes), and with folding plus
``symbol_suffixes`` and plus ``cjk="bigrams"``. Reports nDCG@10 and R@100, how many documents
and queries analyse to other terms than without folding (what can change the figures at all),
how many queries' nDCG@10 went up / down, and the index build time. Writes
bench/results/analysis-quality-<date>.md.
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
from cascade.index.segment import doc_text
from cascade.retrieve.bm25 import BM25

METRICS = ["nDCG@10", "R@100"]
RESULTS = Path(__file__).resolve().parent / "results"
FIELDS = ("title", "text")

BEFORE = cascade.Analyzer(fold_accents=False)
SETTINGS = {
    "no folding (before)": BEFORE,
    "folding (new default)": cascade.Analyzer(),
    "folding + symbol suffixes": cascade.Analyzer(symbol_suffixes=True),
    "folding + cjk bigrams": cascade.Analyzer(cjk="bigrams"),
}


def run_bm25(dataset: cascade.BeirDataset, analyzer: cascade.Analyzer,
             queries: list[cascade.Query]) -> tuple[object, float]:
    start = time.perf_counter()
    idx = cascade.Index.build(dataset.corpus(skip_bad=True, report=ReadReport()), Path(tempfile.mkdtemp()) / "i",
                              analyzer=analyzer, fields=FIELDS)
    seconds = time.perf_counter() - start
    run = BM25(idx, k=1000).search_batch(queries).to_run()
    return evaluate(run, dataset.qrels(), METRICS, queries=[q.id for q in queries]), seconds


def changed(texts: list[str], analyzer: cascade.Analyzer) -> int:
    """How many texts analyse to other terms than under BEFORE."""
    return sum(BEFORE.terms(t) != analyzer.terms(t) for t in texts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="+", type=Path)
    parser.add_argument("--no-write", action="store_true", help="print only; do not write bench/results")
    args = parser.parse_args()
    rows = ["| dataset | analyzer | nDCG@10 | R@100 | docs with other terms | queries with other terms "
            "| queries nDCG@10 up / down | index s |", "|---|---|---|---|---|---|---|---|"]
    for path in args.datasets:
        dataset = cascade.BeirDataset(path)
        qrels = dataset.qrels()
        queries = [q for q in dataset.queries() if q.id in qrels]
        docs = [doc_text(d, FIELDS) for d in dataset.corpus(skip_bad=True, report=ReadReport())]
        base = None
        for name, analyzer in SETTINGS.items():
            result, seconds = run_bm25(dataset, analyzer, queries)
            if base is None:
                base, moved = result, "-"
                n_docs = n_queries = "-"
            else:
                ups = sum(result.per_query[q]["nDCG@10"] > base.per_query[q]["nDCG@10"] for q in base.per_query)
                downs = sum(result.per_query[q]["nDCG@10"] < base.per_query[q]["nDCG@10"] for q in base.per_query)
                moved = f"{ups} / {downs}"
                n_docs = f"{changed(docs, analyzer)} of {len(docs)}"
                n_queries = f"{changed([q.text for q in queries], analyzer)} of {len(queries)}"
            m = result.mean
            rows.append(f"| {dataset.name} | {name} | {m['nDCG@10']:.4f} | {m['R@100']:.4f} | {n_docs} | {n_queries} "
                        f"| {moved} | {seconds:.2f} |")
            print(rows[-1], flush=True)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / f"analysis-quality-{datetime.date.today()}.md"
        command = "python bench/analysis_quality.py " + " ".join(str(p) for p in args.datasets)
        out.write_text(f"# BM25 quality under the analyzer's text options\n\nCommand: `{command}`\n\n"
                       "BM25 k1=0.9 b=0.4, title + text, Lucene stop set, Snowball English, k=1000. "
                       "'other terms': texts that analyse differently than with no folding.\n\n"
                       + "\n".join(rows) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
