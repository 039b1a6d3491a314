"""How much can MaxSim reranking prune and still return exactly the unpruned top 10?

    python bench/maxsim_pruning.py ../shared/datasets/scifact [--model minilm] [--first bm25|dense]
        [--queries 60]

Two measurements on a first stage's top 100 (bench/results/maxsim-pruning-<date>-<dataset>.md):

1. Rank-safe bounds. For the low-rank bounds of :mod:`cascade.rerank.maxsim_bounds` at ranks
   32, 64 and 128 (basis from the candidates' tokens, in float64, without the float16 rounding of the
   stored bounds):
   the mean slack (bound minus exact score), the mean gap between the 10th exact score and the
   median candidate, and how many of the 100 candidates a rank-safe pruner must still score
   exactly (bound >= 10th exact score). Pruning pays only when the slack is well below the gap.
2. Early exit in first-stage order (the heuristic of Martinico et al. 2025): score candidates in
   the first stage's order and stop after ``patience`` candidates in a row fail to enter the
   running top 10. For each patience: queries whose top 10 stays identical, share scored.
   Also where the deepest of the final top 10 sits in the first stage's order.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
DEPTH, K = 100, 10


def candidates(dataset: Path, model: str, first: str, n_queries: int) -> tuple[str, list, list]:
    from cascade.data.beir import BeirDataset
    from cascade.index.cache import cached_index
    from cascade.rerank.maxsim import MaxSim
    from cascade.retrieve.bm25 import BM25
    from cascade.retrieve.dense import Dense
    from cascade.text.analyzer import Analyzer

    ds = BeirDataset(dataset)
    index, _, _ = cached_index(ds.name, ds.content_hash(), ds.corpus, analyzer=Analyzer())
    qrels = ds.qrels("test")
    queries = [q for q in ds.queries() if q.id in qrels][:n_queries]
    stage = BM25(index) if first == "bm25" else Dense(index, model=model)
    run = stage.search_batch(queries, k=DEPTH)
    ms = MaxSim(index, model=model, k=K)
    qtoks = ms.query_tokens(queries)
    docs = [[ms.tokens.rows(*w) for w in ms.tokens.slices(run.doc[run.offsets[i]:run.offsets[i + 1]].astype(np.int64))]
            for i in range(len(queries))]
    return ds.name, qtoks, docs


def bounds_table(qtoks: list[np.ndarray], docs: list[list[np.ndarray]], ranks: tuple[int, ...]) -> list[str]:
    from cascade.rerank.maxsim_bounds import principal_basis

    sample = np.concatenate([d for per_query in docs for d in per_query])
    rows = ["| rank | mean slack (bound - exact) | mean gap (10th - median exact) | candidates still scored (of 100) |",
            "|---|---|---|---|"]
    for rank in ranks:
        basis = principal_basis(sample, rank).astype(np.float64)
        slack, gap, needed = [], [], []
        for q, per_query in zip(qtoks, docs):
            q = q.astype(np.float64)
            qp = q @ basis
            q_perp = np.linalg.norm(q - qp @ basis.T, axis=1)
            exact, upper = [], []
            for tokens in per_query:
                v = np.asarray(tokens, dtype=np.float64)
                vp = v @ basis
                v_perp = np.linalg.norm(v - vp @ basis.T, axis=1)
                exact.append((q @ v.T).max(axis=1).sum())
                upper.append((qp @ vp.T + np.outer(q_perp, v_perp)).max(axis=1).sum())
            exact_a, upper_a = np.array(exact), np.array(upper)
            kth = np.sort(exact_a)[-K]
            slack.append(np.mean(upper_a - exact_a))
            gap.append(kth - np.median(exact_a))
            needed.append(int((upper_a >= kth).sum()))
        rows.append(f"| {rank} | {np.mean(slack):.3f} | {np.mean(gap):.3f} | {np.mean(needed):.1f} |")
    return rows


def early_exit_table(exact: list[np.ndarray], patiences: tuple[int, ...]) -> list[str]:
    deepest = [int(np.argsort(-e, kind="stable")[:K].max()) for e in exact]
    rows = [f"Deepest of the final top {K} in first-stage order (0-based), quantiles 50/90/100%: "
            f"{np.percentile(deepest, 50):.0f} / {np.percentile(deepest, 90):.0f} / {max(deepest)}", "",
            "| patience | queries with identical top 10 | share of candidates scored |", "|---|---|---|"]
    for patience in patiences:
        same = scored = 0
        for e in exact:
            n = _early_exit_depth(e, patience)
            scored += n
            same += set(np.argsort(-e[:n], kind="stable")[:K]) == set(np.argsort(-e, kind="stable")[:K])
        rows.append(f"| {patience} | {same} / {len(exact)} | {scored / sum(len(e) for e in exact):.0%} |")
    return rows


def _early_exit_depth(scores: np.ndarray, patience: int) -> int:
    top: list[float] = []
    misses = 0
    for n, s in enumerate(scores, start=1):
        if len(top) < K or s > top[0]:
            top = sorted([*top, float(s)])[-K:]
            misses = 0
        else:
            misses += 1
            if misses >= patience:
                return n
    return len(scores)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--first", choices=("bm25", "dense"), default="bm25")
    parser.add_argument("--queries", type=int, default=60)
    args = parser.parse_args()
    name, qtoks, docs = candidates(args.dataset, args.model, args.first, args.queries)
    exact = [np.array([(q @ np.asarray(t, dtype=np.float32).T).max(axis=1).sum() for t in per_query]) for q, per_query in zip(qtoks, docs)]
    first = "bm25" if args.first == "bm25" else f"dense(model={args.model})"
    parts = [f"# MaxSim pruning limits on {name} ({args.model}, `{first} % {DEPTH}`, first {len(qtoks)} test queries)",
             "", f"Command: `python bench/maxsim_pruning.py {' '.join(sys.argv[1:])}`", "",
             "## Rank-safe low-rank bounds", "", *bounds_table(qtoks, docs, (32, 64, 128)), "",
             "## Early exit in first-stage order", "", *early_exit_table(exact, (10, 20, 30, 40, 50, 60))]
    text = "\n".join(parts) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"maxsim-pruning-{datetime.date.today()}-{name}-{args.first}.md"
    out.write_text(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
