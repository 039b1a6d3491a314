"""Evaluate pipelines or stored runs on a BEIR-layout dataset; the engine of `cascade eval`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from cascade.data.beir import BeirDataset
from cascade.data.trec import read_trec_run, write_trec_run
from cascade.data.types import Qrels, Query, ReadReport, Run
from cascade.errors import CascadeError
from cascade.evaluate.metrics import evaluate, parse_metrics
from cascade.index.cache import cached_index
from cascade.index.index import Index
from cascade.text.analyzer import Analyzer

PIPELINES = ("bm25",)


@dataclass
class EvalOptions:
    metrics: str | Sequence[str] = "nDCG@10,R@100"
    split: str = "test"
    k: int = 1000
    k1: float = 0.9
    b: float = 0.4
    analyzer: Analyzer = field(default_factory=Analyzer)
    skip_bad: bool = False
    use_cache: bool = True
    save_run: Path | None = None


@dataclass
class Progress:
    """Callbacks a front end can hook to show progress (all optional)."""

    indexing: Callable[[int], None] | None = None
    searching: Callable[[int], None] | None = None
    phase: Callable[[str, int | None], None] | None = None  # (description, total or None)


def resolve_run_path(dataset: BeirDataset, run: str | Path) -> Path:
    """A run path as given, or relative to the dataset directory."""
    path = Path(run)
    if not path.exists() and (dataset.root / path).exists():
        return dataset.root / path
    if not path.exists():
        raise CascadeError(f"{run}: no such run file (looked here and in {dataset.root})")
    return path


def _open_or_build(dataset: BeirDataset, index_dir: Path | None, opts: EvalOptions,
                   progress: Progress, report: ReadReport) -> tuple[Index, float]:
    start = time.perf_counter()
    if index_dir is not None:
        return Index.open(index_dir), time.perf_counter() - start
    if progress.phase:
        progress.phase(f"indexing {dataset.name}", None)
    corpus = lambda: dataset.corpus(skip_bad=opts.skip_bad, report=report)  # noqa: E731
    if opts.use_cache:
        index, seconds, _ = cached_index(dataset.name, dataset.content_hash(), corpus, analyzer=opts.analyzer,
                                         skip_bad=opts.skip_bad, progress=progress.indexing)
        return index, seconds
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="cascade-eval-")) / "index"
    index = Index.build(corpus(), tmp, analyzer=opts.analyzer, progress=progress.indexing)
    return index, time.perf_counter() - start


def _score(name: str, run: Run, qrels: Qrels, metrics: Any, queries: list[str] | None,
           seconds: dict[str, float]) -> dict[str, Any]:
    result = evaluate(run, qrels, metrics, queries=queries)
    return {"pipeline": name, "metrics": result.mean, "seconds": {k: round(v, 4) for k, v in seconds.items()},
            "per_query": result.per_query}


def run_eval(dataset_dir: str | Path, *, pipelines: Sequence[str] = (), runs: Sequence[str | Path] = (),
             index_dir: Path | None = None, opts: EvalOptions | None = None,
             progress: Progress | None = None) -> dict[str, Any]:
    """Evaluate each pipeline and stored run on a dataset's queries and qrels.

    Returns ``{"dataset", "queries", "results": [{"pipeline", "metrics", "seconds",
    "per_query"}], "skipped"}``; the CLI prints it without ``per_query``.
    """
    opts = opts or EvalOptions()
    progress = progress or Progress()
    parse_metrics(opts.metrics)  # fail on a bad metric before any work
    unknown = [p for p in pipelines if p not in PIPELINES]
    if unknown:
        raise CascadeError(f"unknown pipeline {unknown[0]!r}; available: {', '.join(PIPELINES)}")
    dataset = BeirDataset(dataset_dir)
    report = ReadReport()
    qrels = dataset.qrels(opts.split, skip_bad=opts.skip_bad, report=report)
    queries: list[Query] = [q for q in dataset.queries(skip_bad=opts.skip_bad, report=report) if q.id in qrels]
    if not queries:
        raise CascadeError(f"{dataset.root}: no query has judgements in qrels/{opts.split}.tsv")
    results = []
    for run_file in runs:
        start = time.perf_counter()
        run = read_trec_run(resolve_run_path(dataset, run_file), skip_bad=opts.skip_bad, report=report)
        results.append(_score(f"run({run_file})", run, qrels, opts.metrics, None,
                              {"read": time.perf_counter() - start}))
    if pipelines:
        index, index_seconds = _open_or_build(dataset, index_dir, opts, progress, report)
        for name in pipelines:
            if progress.phase:
                progress.phase(f"searching {len(queries)} queries ({name})", len(queries))
            cands = index.bm25(k1=opts.k1, b=opts.b, k=opts.k).search_batch(queries, progress=progress.searching)
            run = cands.to_run()
            if opts.save_run is not None:
                write_trec_run(run, opts.save_run, tag=name)
            results.append(_score(name, run, qrels, opts.metrics, [q.id for q in queries],
                                  {"index": index_seconds, "search": sum(cands.seconds.values())}))
    return {"dataset": dataset.name, "queries": len(queries), "results": results,
            "skipped": report.skipped, "problems": report.problems}
