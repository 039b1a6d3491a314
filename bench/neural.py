"""Neural stages: nDCG@10 of first stages and MaxSim cascades, and MaxSim pruning speed.

    python bench/neural.py ../shared/datasets/scifact ../shared/datasets/nfcorpus-preprocessed \\
        ../shared/datasets/trec-dl19-passage-pool [--models minilm,mpnet] [--speed scifact]
    python bench/neural.py ../shared/datasets/trec-dl19-passage-pool --models mpnet --rerank-only

Quality: for a BEIR dataset, every first stage (BM25, dense per model, learned sparse in both
query modes when the ``sparse`` stage is installed, RRF of BM25 and dense), each alone and
followed by MaxSim over its top 100 (``X % 100 >> maxsim(model=M) % 10``), plus dense
rescoring of BM25's top 100. For the DL19 pool (a fixed candidate set) the first stage is the
stored run ``runs/BM25.top100.trec`` and the same rerankers follow it. The collection is
encoded once per model and kept in the evaluation index cache (``cascade cache info``).
``--rerank-only`` (pool datasets) evaluates only rerankers of ``runs/BM25.top100.trec`` on a copy
of the dataset whose corpus holds just that run's documents: the same scores, a third of the
encoding (how the mpnet rows were made on this 2-core machine).

Speed (``--speed DATASET``): MaxSim reranking of BM25's top 100 to a top 10, pruned vs unpruned,
in one process, alternating, ``--repeat`` times (median); the top 10 must be identical. Then the
two-stage ``bm25 % 100 >> maxsim % 10`` against exhaustive MaxSim over the whole corpus: time and
nDCG@10.

Writes bench/results/neural-<date>.md with the command line and machine.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from cascade.core.registry import stage_names
from cascade.evaluation.experiment import EvalOptions, run_experiment, strip_per_query
from cascade.retrieve.bm25 import BM25

RESULTS = Path(__file__).resolve().parent / "results"
DEPTH = 100


def beir_pipelines(models: list[str], sparse: bool = True) -> list[str]:
    first = ["bm25"]
    for m in models:
        first += [f"dense(model={m})", f"rrf(bm25, dense(model={m}))"]
    if sparse and "sparse" in stage_names():
        first += ["sparse", "sparse(mode=inference_free)"]
    out = []
    for stage in first:
        out.append(stage)
        for m in models:
            out.append(f"{_wrap(stage)} % {DEPTH} >> maxsim(model={m}) % 10")
    out += [f"bm25 % {DEPTH} >> dense_rerank(model={m})" for m in models]
    # fusing the lexical, dense and late-interaction views
    out += [f"rrf(bm25, dense(model={m}), bm25 % {DEPTH} >> maxsim(model={m}))" for m in models]
    return out


def pool_pipelines(models: list[str], sparse: bool = True) -> list[str]:
    run = "run(runs/BM25.top100.trec)"
    out = [run]
    for m in models:
        out += [f"{run} >> dense_rerank(model={m})", f"{run} >> maxsim(model={m})",
                f"rrf({run}, {run} >> dense_rerank(model={m}))", f"dense(model={m})"]
    if sparse and "sparse" in stage_names():
        out += [f"{run} >> maxsim(model={models[0]}) % 10"]
    return out


def rerank_pipelines(models: list[str]) -> list[str]:
    run = "run(runs/BM25.top100.trec)"
    out = [run]
    for m in models:
        out += [f"{run} >> dense_rerank(model={m})", f"rrf({run}, {run} >> dense_rerank(model={m}))",
                f"{run} >> maxsim(model={m})", f"rrf({run}, {run} >> maxsim(model={m}))",
                f"rrf({run}, {run} >> dense_rerank(model={m}), {run} >> maxsim(model={m}))",
                f"rrf({run} >> dense_rerank(model={m}), {run} >> maxsim(model={m}))",
                f"combsum({run} >> dense_rerank(model={m}), {run} >> maxsim(model={m}), norm=zscore)"]
    return out


def candidates_only(dataset: Path, run: str = "runs/BM25.top100.trec") -> Path:
    """A copy of a pool dataset whose corpus holds only the documents of ``run``: reranking that
    run gives the same scores as on the whole pool, and only those documents get encoded."""
    import json
    import tempfile

    wanted = {line.split()[2] for line in (dataset / run).read_text().splitlines() if line.strip()}
    out = Path(tempfile.gettempdir()) / f"{dataset.name}-{Path(run).stem}-docs"
    out.mkdir(exist_ok=True)
    with open(dataset / "corpus.jsonl") as src, open(out / "corpus.jsonl", "w") as dst:
        for line in src:
            if json.loads(line)["_id"] in wanted:
                dst.write(line)
    for name in ("queries.jsonl", "qrels", "runs"):
        if not (out / name).exists():
            (out / name).symlink_to((dataset / name).resolve())
    return out


def _wrap(stage: str) -> str:
    return f"({stage})" if " " in stage and not stage.startswith("rrf") else stage


def quality(dataset: Path, models: list[str], rerank_only: bool = False, sparse: bool = True) -> dict[str, Any]:
    if rerank_only:
        pipelines = rerank_pipelines(models)
        dataset = candidates_only(dataset)
    else:
        pipelines = (pool_pipelines if (dataset / "runs").is_dir() else beir_pipelines)(models, sparse)
    opts = EvalOptions(metrics="nDCG@10,R@100")  # the cached index: encoded once per model
    start = time.perf_counter()
    report = strip_per_query(run_experiment(dataset, pipelines, opts=opts))
    for result in report["results"]:
        result.pop("_run", None)
    report["wall_seconds"] = time.perf_counter() - start
    return report


def quality_table(reports: list[dict[str, Any]]) -> str:
    lines = ["| dataset | pipeline | nDCG@10 | R@100 | search s (first run; cached stages on reruns) |",
             "|---|---|---|---|---|"]
    for report in reports:
        for result in report["results"]:
            m = result["metrics"]
            lines.append(f"| {report['dataset']} | `{result['pipeline']}` | {m['nDCG@10']:.4f} | "
                         f"{m.get('R@100', float('nan')):.4f} | {result['seconds']['search']:.1f} |")
    return "\n".join(lines)


def speed(dataset: Path, model: str, repeat: int, skip_exhaustive: bool = False) -> str:
    """Pruned vs unpruned MaxSim over BM25's top 100, and two-stage vs exhaustive MaxSim."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):  # as MaxSim.score does: one small product per document
        return _speed(dataset, model, repeat, skip_exhaustive)


def _speed(dataset: Path, model: str, repeat: int, skip_exhaustive: bool = False) -> str:
    from cascade.data.beir import BeirDataset
    from cascade.evaluation.metrics import evaluate
    from cascade.index.cache import cached_index
    from cascade.rerank.maxsim import MaxSim
    from cascade.text.analyzer import Analyzer

    ds = BeirDataset(dataset)
    index, _, _ = cached_index(ds.name, ds.content_hash(), ds.corpus, analyzer=Analyzer())
    qrels = ds.qrels("test")
    queries = [q for q in ds.queries() if q.id in qrels]
    n_queries = len(queries)
    first = BM25(index).search_batch(queries, k=DEPTH)
    pruned, full = MaxSim(index, model=model, k=10), MaxSim(index, model=model, k=10, prune=False)
    pruned.tokens, pruned.bounds, full.tokens  # load vectors and bounds (building them if needed) untimed
    qtoks = pruned.query_tokens(queries)
    docs = [first.doc[first.offsets[i]:first.offsets[i + 1]].astype(np.int64) for i in range(len(queries))]
    times: dict[str, list[float]] = {"pruned": [], "unpruned": []}
    scored = 0
    for _ in range(repeat):
        for label, fn in (("unpruned", lambda q, d: full.score_all(q, d)),
                          ("pruned", lambda q, d: pruned.score_pruned(q, d, 10))):
            start = time.perf_counter()
            outs = [fn(q, d) for q, d in zip(qtoks, docs)]
            times[label].append(time.perf_counter() - start)
            if label == "pruned":
                scored = sum(len(o[0]) for o in outs)
                pruned_top = [_top(o, d, 10) for o, d in zip(outs, docs)]
            else:
                full_top = [_top(o, d, 10) for o, d in zip(outs, docs)]
    identical = all(p == f for p, f in zip(pruned_top, full_top))
    t_pruned, t_full = statistics.median(times["pruned"]), statistics.median(times["unpruned"])
    print(f"pruning: unpruned {t_full:.3f} s, pruned {t_pruned:.3f} s, scored {scored}, identical {identical}",
          flush=True)
    stages = {"prune=False": full, "prune=True": pruned,
              "prune=auto (default)": MaxSim(index, model=model, k=10, prune="auto")}
    stage_times: dict[str, list[float]] = {label: [] for label in stages}
    outputs: dict[str, list] = {}
    for _ in range(repeat):  # the stage as a pipeline runs it: query encoding included
        for label, stage in stages.items():
            start = time.perf_counter()
            outputs[label] = [list(d) for _, d, _ in stage.rerank(queries, first).per_query()]
            stage_times[label].append(time.perf_counter() - start)
    same = all(out == outputs["prune=False"] for out in outputs.values())
    stage_rows = [f"| `maxsim({label})` | {statistics.median(t):.3f} | {n_queries / statistics.median(t):.1f} |"
                  for label, t in stage_times.items()]
    if skip_exhaustive:
        return "\n".join([f"### MaxSim stage on {ds.name} ({model}, BM25 top {DEPTH} -> top 10, "
                          f"{n_queries} queries, median of {repeat})", "",
                          "| stage | seconds | queries/s |", "|---|---|---|", *stage_rows, "",
                          f"Top 10 identical across the three: {same}; bounds alone: scored "
                          f"{scored} of {DEPTH * n_queries} candidates exactly, {t_full / t_pruned:.2f}x."])

    # two-stage vs exhaustive over the whole corpus
    all_docs = np.arange(index.n_docs, dtype=np.int64)
    start = time.perf_counter()
    exhaustive = [_top(full.score_all(q, all_docs), all_docs, 10) for q in qtoks]
    t_exhaustive = time.perf_counter() - start
    start = time.perf_counter()
    first2 = BM25(index).search_batch(queries, k=DEPTH)
    q2 = pruned.query_tokens(queries)
    d2 = [first2.doc[first2.offsets[i]:first2.offsets[i + 1]].astype(np.int64) for i in range(len(queries))]
    two_stage = [_top(pruned.score_pruned(q, d, 10), d, 10) for q, d in zip(q2, d2)]
    t_two_stage = time.perf_counter() - start
    ids = index.doc_ids
    run_ex = {q.id: {ids([n])[0]: float(s) for n, s in top} for q, top in zip(queries, exhaustive)}
    run_two = {q.id: {ids([n])[0]: float(s) for n, s in top} for q, top in zip(queries, two_stage)}
    nd_ex = evaluate(run_ex, qrels, ["nDCG@10"]).mean["nDCG@10"]
    nd_two = evaluate(run_two, qrels, ["nDCG@10"]).mean["nDCG@10"]
    n = len(queries)
    return "\n".join([
        f"### MaxSim pruning on {ds.name} ({model}, BM25 top {DEPTH} -> top 10, {n} queries, median of {repeat})", "",
        "| MaxSim | seconds | queries/s | candidates scored exactly |", "|---|---|---|---|",
        f"| unpruned | {t_full:.3f} | {n / t_full:.1f} | {DEPTH * n} |",
        f"| pruned (rank-safe bounds) | {t_pruned:.3f} | {n / t_pruned:.1f} | {scored} ({scored / (DEPTH * n):.0%}) |",
        "", f"Speed-up {t_full / t_pruned:.2f}x; top 10 identical for every query: {identical}.", "",
        "As a stage (query encoding included):", "", "| stage | seconds | queries/s |", "|---|---|---|",
        *stage_rows, "", f"Top 10 identical across the three: {same}.", "",
        f"### Two-stage vs exhaustive MaxSim on {ds.name} ({model})", "",
        "| system | seconds (query encoding included for two-stage) | queries/s | nDCG@10 |", "|---|---|---|---|",
        f"| exhaustive MaxSim over all {index.n_docs} docs | {t_exhaustive:.2f} | {n / t_exhaustive:.1f} | {nd_ex:.4f} |",
        f"| bm25 % {DEPTH} >> maxsim % 10 | {t_two_stage:.2f} | {n / t_two_stage:.1f} | {nd_two:.4f} |",
        "", f"Two-stage is {t_exhaustive / t_two_stage:.1f}x faster; nDCG@10 difference {nd_two - nd_ex:+.4f}.",
    ])


def _top(out: tuple[np.ndarray, np.ndarray], docs: np.ndarray, k: int) -> list[tuple[int, float]]:
    positions, scores = out
    order = np.lexsort((docs[positions], -scores))[:k]
    return [(int(docs[positions][i]), float(scores[i])) for i in order]


def machine() -> str:
    cpu = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    from cascade.models.resolve import default_device

    device = default_device()
    if device.startswith("cuda"):
        import torch

        device += f" ({torch.cuda.get_device_name()}, encoding only: MaxSim and dense search run on the CPU)"
    return f"{cpu}; encoders on {device}"


def main() -> int:
    return run(main_args())


def main_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="*", type=Path)
    parser.add_argument("--models", default="minilm")
    parser.add_argument("--speed", type=Path, help="dataset for the MaxSim speed section")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pruning-only", action="store_true", help="--speed without the exhaustive comparison")
    parser.add_argument("--rerank-only", action="store_true",
                        help="pool datasets: only rerank runs/BM25.top100.trec, encoding just its documents")
    parser.add_argument("--no-sparse", action="store_true", help="leave out the learned-sparse rows")
    return parser.parse_args()


def run(args: argparse.Namespace) -> int:
    models = [m for m in args.models.split(",") if m]
    command = "python bench/neural.py " + " ".join(sys.argv[1:])
    parts = [f"# Neural stages\n\nCommand: `{command}`\n\nMachine: {machine()}\n"]
    reports = [quality(d, models, args.rerank_only, not args.no_sparse) for d in args.datasets]
    if reports:
        parts.append(quality_table(reports))
        print(parts[-1], flush=True)
    if args.speed:
        parts.append(speed(args.speed, models[0], args.repeat, args.pruning_only))
        print(parts[-1], flush=True)
    RESULTS.mkdir(exist_ok=True)
    what = "-".join(d.name for d in args.datasets) or ("pruning" if args.pruning_only else "speed")
    if models != ["minilm"]:
        what += "-" + "-".join(models)
    out = RESULTS / f"neural-{datetime.date.today()}-{what}.md"
    out.write_text("\n\n".join(parts) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
