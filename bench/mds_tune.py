"""mds_rerank's dims and alpha on *training* queries (never test queries): SciFact's 809 training
queries (``../shared/datasets/training/scifact``, judged over the SciFact corpus).

    python bench/mds_tune.py [--training ../shared/datasets/training/scifact] [--corpus ../shared/datasets/scifact]
                             [--queries N]

The candidates are ``bm25 % 100 >> maxsim`` (MiniLM token vectors from the eval cache, the same
index ``cascade eval`` builds for the corpus); each query's local similarity matrix over its top
k = 20 is computed once (:meth:`cascade.rerank.mds.MDSRerank.similarity`), then every
(dims, alpha) of the grid re-ranks from it with :func:`cascade.rerank.mds.mds_scores`. Reported:
nDCG@10 on the training qrels for each setting and for ``maxsim`` alone. Writes
``bench/results/mds-tune-<date>.md``.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import cascade
from cascade.data.beir import BeirDataset
from cascade.evaluation.metrics import evaluate
from cascade.index.cache import cached_index
from cascade.models.encoders import query_encodings
from cascade.rerank.mds import MDSRerank, mds_scores, minmax
from cascade.text.analyzer import Analyzer

HERE = Path(__file__).resolve().parent
DATASETS = HERE.parent.parent / "shared" / "datasets"
DIMS = (2, 4, 8, 16)
ALPHAS = (0.0, 0.25, 0.5, 0.75, 0.9)
K = 20


def training_view(training: Path, corpus: Path, root: Path) -> Path:
    """A BEIR directory named like the corpus's dataset (so the eval cache's index is reused):
    its corpus, the training queries, the training qrels as ``qrels/test.tsv``."""
    view = root / corpus.resolve().name
    (view / "qrels").mkdir(parents=True)
    (view / "corpus.jsonl").symlink_to((corpus / "corpus.jsonl").resolve())
    (view / "queries.jsonl").symlink_to((training / "queries.jsonl").resolve())
    (view / "qrels" / "test.tsv").symlink_to((training / "qrels" / "train.tsv").resolve())
    return view


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--training", type=Path, default=DATASETS / "training" / "scifact")
    parser.add_argument("--corpus", type=Path, default=DATASETS / "scifact")
    parser.add_argument("--queries", type=int, default=None, help="only the first N judged training queries")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        ds = BeirDataset(training_view(args.training, args.corpus, Path(tmp)))
        index, _, _ = cached_index(ds.name, ds.content_hash(), ds.corpus, analyzer=Analyzer())
        qrels = ds.qrels("test")
        queries = [q for q in ds.queries() if q.id in qrels][:args.queries]
    start = time.perf_counter()
    cands = cascade.parse("bm25 % 100 >> maxsim", index=index)(queries)
    stage = MDSRerank(index, k=K)
    tokens = query_encodings("minilm").tokens([q.text for q in queries])
    heads, sims, incoming = [], [], []
    for i, (qid, docs, scores) in enumerate(cands.per_query()):
        heads.append(docs[:K])
        incoming.append(scores[:K])
        sims.append(stage.similarity(tokens[i], docs[:K].astype(np.int64)))
    seconds = time.perf_counter() - start
    ids = [q.id for q in queries]
    full = [len(h) == K for h in heads]
    base = evaluate(cands.to_run(), qrels, ["nDCG@10"], queries=ids).mean["nDCG@10"]
    rows = []
    for dims in DIMS:
        for alpha in ALPHAS:
            new = minmax(mds_scores(np.stack([s for s, f in zip(sims, full) if f]),
                                    np.stack([x for x, f in zip(incoming, full) if f]), dims, alpha))
            run, j = {}, 0
            for qid, head, f, (_, docs, scores) in zip(ids, heads, full, cands.per_query()):
                # as the stage orders them: the re-scored head (scores in [0, 1]) above the tail in its order
                run[qid] = {d: -1.0 - r for r, d in enumerate(index.doc_ids(docs))}
                if f:
                    run[qid].update({d: float(v) for d, v in zip(index.doc_ids(head), new[j])})
                    j += 1
            rows.append((dims, alpha, evaluate(run, qrels, ["nDCG@10"], queries=ids).mean["nDCG@10"]))
    best = max(rows, key=lambda r: r[2])
    today = datetime.date.today().isoformat()
    lines = [f"# mds_rerank on SciFact training queries, {today}", "",
             f"Command: `{shlex.join(['python', 'bench/mds_tune.py', *(sys.argv[1:] if argv is None else argv)])}`", "",
             f"{len(queries)} training queries ({sum(full)} with at least {K} candidates), k = {K}; "
             f"candidates, similarity matrices: {seconds:.0f} s. `bm25 % 100 >> maxsim` alone: nDCG@10 {base:.4f}.",
             f"Best: dims={best[0]}, alpha={best[1]} (nDCG@10 {best[2]:.4f}).", "",
             "| dims | " + " | ".join(f"alpha={a}" for a in ALPHAS) + " |",
             "|---:|" + "---:|" * len(ALPHAS)]
    for dims in DIMS:
        lines.append(f"| {dims} | " + " | ".join(f"{v:.4f}" for d, _, v in rows if d == dims) + " |")
    out = HERE / "results" / f"mds-tune-{today}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
