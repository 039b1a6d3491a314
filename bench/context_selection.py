"""Context selection on judged collections: for each method, how many passages it keeps per
query, how many tokens that is, and what share of each query's relevant documents the kept
context holds, against fixed top-k cuts (k = 5, 10, 20). BM25 (k1=0.9, b=0.4) gives the first
stage's top ``--depth`` candidates.

    python bench/context_selection.py ../shared/datasets/trec-dl19-passage-pool ../shared/datasets/scifact

Relevant means a graded label >= 2 on TREC DL (the passage-task convention) and >= 1
elsewhere (``--threshold`` overrides). Recall is the per-query share of relevant documents in
the kept context, averaged over the judged queries that have any; "any relevant" is the share of
queries whose context holds at least one. Writes bench/results/context-selection-<date>.md.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path

from cascade.context.base import count_tokens, passage_text
from cascade.context.similarity import dense_name
from cascade.core.executor import Executor
from cascade.core.registry import Context
from cascade.data.beir import BeirDataset
from cascade.index.cache import cached_index
from cascade.pipeline.parse import parse
from cascade.text.analyzer import Analyzer

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = [
    "% 5", "% 10", "% 20",
    ">> budget(tokens=256)", ">> budget(tokens=512)", ">> budget(tokens=1024)",
    ">> budget(tokens=512, fill=true)",
    ">> adaptive_k", ">> adaptive_k(min_k=3)", ">> adaptive_k(min_k=3, buffer=2)", ">> adaptive_k(max_k=50)",
    ">> mmr(k=5, sim=terms)", ">> mmr(k=10, sim=terms)", ">> mmr(k=10, lam=0.8, sim=terms)",
    ">> adaptive_k(min_k=3, max_k=20) >> budget(tokens=1024)",
]
DENSE_METHODS = [">> mmr(k=5, sim=dense)", ">> mmr(k=10, sim=dense)", ">> mmr(k=10, lam=0.8, sim=dense)"]


def threshold_for(dataset: Path, given: int | None) -> int:
    if given is not None:
        return given
    return 2 if "dl19" in dataset.name or "dl20" in dataset.name else 1


def evaluate(dataset: Path, depth: int, threshold: int | None) -> str:
    ds = BeirDataset(dataset)
    index, _, _ = cached_index(ds.name, ds.content_hash(), ds.corpus, analyzer=Analyzer())
    qrels = ds.qrels("test")
    rel_at = threshold_for(dataset, threshold)
    relevant = {q: {d for d, g in docs.items() if g >= rel_at} for q, docs in qrels.items()}
    queries = [q for q in ds.queries() if relevant.get(q.id)]
    ctx = Context.of(index=index)
    executor = Executor()
    tokens_of: dict[int, int] = {}
    rows = []
    dense = dense_name(index, None)
    for method in METHODS + (DENSE_METHODS if dense else []):
        text = f"bm25 {method}" if method.startswith("%") else f"bm25 % {depth} {method}"
        node = parse(text, ctx).compile()
        start = time.perf_counter()
        out = executor.run(node, queries)
        seconds = time.perf_counter() - start
        kept, tokens, recall, anyrel = [], [], [], []
        for qid, nums, _ in out:
            ids = set(index.doc_ids(nums))
            missing = [int(n) for n in nums if int(n) not in tokens_of]
            for n, doc in zip(missing, index.docs(missing)):
                tokens_of[n] = count_tokens(passage_text(doc))
            kept.append(len(nums))
            tokens.append(sum(tokens_of[int(n)] for n in nums))
            found = len(ids & relevant[qid])
            recall.append(found / len(relevant[qid]))
            anyrel.append(found > 0)
        rows.append((text, statistics.mean(kept), statistics.median(kept), min(kept), max(kept),
                     statistics.mean(tokens), statistics.mean(recall), statistics.mean(anyrel),
                     1000 * seconds / len(queries)))
    lines = [f"## {ds.name}\n",
             f"{len(queries)} judged queries with a relevant document (label >= {rel_at}); {index.n_docs:,} "
             f"documents; first stage BM25, top {depth}; "
             + (f"`sim=dense`: the index's stored `{dense}` vectors.\n" if dense else "no stored dense vectors.\n"),
             "| pipeline | kept / query (mean, median, min-max) | tokens / query | recall in context | "
             "any relevant | ms / query |",
             "|---|---|---|---|---|---|"]
    for text, mean, median, lo, hi, tok, rec, anyr, ms in rows:
        lines.append(f"| `{text}` | {mean:.1f}, {median:g}, {lo}-{hi} | {tok:,.0f} | {rec:.3f} | {anyr:.3f} | "
                     f"{ms:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="+", type=Path)
    parser.add_argument("--depth", type=int, default=100, help="BM25 candidates the selections choose from")
    parser.add_argument("--threshold", type=int, default=None, help="lowest relevant label (default: 2 on DL, else 1)")
    args = parser.parse_args()
    command = "python bench/context_selection.py " + " ".join(str(d) for d in args.datasets)
    if args.depth != 100:
        command += f" --depth {args.depth}"
    if args.threshold is not None:
        command += f" --threshold {args.threshold}"
    parts = [f"# Context selection: passages kept and relevant documents in the context\n\nCommand: `{command}`\n",
             "Tokens are counted as words and punctuation marks (`cascade.context.base.count_tokens`); `ms / query` "
             "is the pipeline's time per query including BM25 (shared: the first pipeline to need a BM25 "
             "depth pays for it), on 2 CPU cores shared with other jobs, so times are rough. MMR's similarity: "
             "`sim=terms` Jaccard of index terms, `sim=dense` the cosine of stored bi-encoder vectors (rows only "
             "where the cached index has them: `cascade encode` adds them). On DL19 a query has many relevant passages, so recall in a "
             "context of 5-20 stays low; \"any relevant\" (the share of queries whose context holds one) says more "
             "there.\n"]
    for dataset in args.datasets:
        text = evaluate(dataset, args.depth, args.threshold)
        print(text)
        parts.append(text)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"context-selection-{datetime.date.today()}.md"
    out.write_text("\n".join(parts))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
