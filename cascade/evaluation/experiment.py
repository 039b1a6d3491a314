"""Experiments: several pipelines on one dataset, measured stage by stage; the engine of `cascade eval`.

All pipelines run through one :class:`~cascade.core.executor.Executor`, so a prefix they
share (``bm25 % 1000``) runs once. For each pipeline the result holds its metrics, its
per-stage latency (mean / p50 / p95 per query), candidates per stage, each stage's recall
at its cutoff and oracle bound, and significance against a baseline pipeline.

>>> from cascade.evaluation.experiment import run_experiment   # doctest: +SKIP
>>> run_experiment("../shared/datasets/scifact", ["bm25", "bm25_rm3"], baseline=0)  # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cascade.core.candidates import Candidates
from cascade.core.errors import CascadeError
from cascade.core.executor import Executor
from cascade.core.nodes import Pipeline, Then
from cascade.core.registry import Context
from cascade.core.types import Qrels, Query, ReadReport, Run
from cascade.data.beir import BeirDataset
from cascade.data.trec import write_trec_run
from cascade.evaluation.metrics import evaluate, parse_metrics
from cascade.evaluation.significance import holm_bonferroni, paired_randomization_test, paired_t_test
from cascade.index import bm25_formula
from cascade.index.cache import cached_index
from cascade.index.index import Index
from cascade.pipeline.cache import StageCache
from cascade.pipeline.parse import parse
from cascade.text.analyzer import Analyzer

ALPHA = 0.05


@dataclass
class EvalOptions:
    metrics: str | Sequence[str] = "nDCG@10,R@100"
    split: str = "test"
    k1: float = bm25_formula.K1
    b: float = bm25_formula.B
    analyzer: Analyzer = field(default_factory=Analyzer)
    skip_bad: bool = False
    use_cache: bool = True
    save_run: Path | None = None
    baseline: int | None = None
    permutations: int = 10_000


@dataclass
class Progress:
    """Callbacks a front end can hook to show progress (all optional)."""

    indexing: Callable[[int], None] | None = None
    searching: Callable[[int], None] | None = None
    phase: Callable[[str, int | None], None] | None = None  # (description, total or None)


def _stage_progress(progress: Progress) -> Callable[[str, int, int | None], None]:
    """Show a stage's collection-wide work (e.g. encoding documents) as its own phase."""
    shown: list[str] = []

    def report(label: str, done: int, total: int | None) -> None:
        if progress.phase and (not shown or shown[-1] != label):
            shown.append(label)
            progress.phase(label, total)
        if progress.searching:
            progress.searching(done)

    return report


def _index_provider(dataset: BeirDataset, index_dir: Path | None, opts: EvalOptions, progress: Progress,
                    report: ReadReport, seconds: dict[str, float]) -> Callable[[], Index]:
    def provide() -> Index:
        start = time.perf_counter()
        if index_dir is not None:
            index = Index.open(index_dir)
        else:
            if progress.phase:
                progress.phase(f"indexing {dataset.name}", None)
            corpus = lambda: dataset.corpus(skip_bad=opts.skip_bad, report=report)  # noqa: E731
            if opts.use_cache:
                index, _, _ = cached_index(dataset.name, dataset.content_hash(), corpus, analyzer=opts.analyzer,
                                           skip_bad=opts.skip_bad, progress=progress.indexing)
            else:
                import tempfile

                tmp = Path(tempfile.mkdtemp(prefix="cascade-eval-")) / "index"
                index = Index.build(corpus(), tmp, analyzer=opts.analyzer, progress=progress.indexing)
        seconds["index"] = time.perf_counter() - start
        return index

    return provide


def _bm25_defaults(text: str, opts: EvalOptions) -> str:
    """Apply --k1/--b to a bare ``bm25`` pipeline (the CLI's shorthand)."""
    if text.strip() == "bm25" and (opts.k1, opts.b) != (bm25_formula.K1, bm25_formula.B):
        return f"bm25(k1={opts.k1!r}, b={opts.b!r})"
    return text


def run_experiment(dataset_dir: str | Path, pipelines: Sequence[str | Pipeline] = ("bm25",), *,
                   runs: Sequence[str | Path] = (), index_dir: Path | None = None, opts: EvalOptions | None = None,
                   progress: Progress | None = None) -> dict[str, Any]:
    """Evaluate pipelines (strings in the pipeline grammar, or Pipeline objects) and stored runs.

    Returns ``{"dataset", "queries", "results": [...], "skipped", "problems"}``; each result
    has ``pipeline``, ``metrics``, ``seconds``, ``stages``, ``per_query`` and, with a
    baseline, ``significance``.
    """
    opts = opts or EvalOptions()
    progress = progress or Progress()
    metric_names = [name for name, _ in parse_metrics(opts.metrics)]
    dataset = BeirDataset(dataset_dir)
    report = ReadReport()
    seconds: dict[str, float] = {}
    ctx = Context(index_provider=_index_provider(dataset, index_dir, opts, progress, report, seconds),
                  root=dataset.root, on_progress=_stage_progress(progress))
    texts = [f"run({_quote(r)})" for r in runs] + [p if isinstance(p, Pipeline) else _bm25_defaults(p, opts)
                                                   for p in pipelines]
    if not texts:
        raise CascadeError("nothing to evaluate: give a pipeline or a run")
    parsed = [p if isinstance(p, Pipeline) else parse(p, ctx) for p in texts]
    if opts.baseline is not None and not 0 <= opts.baseline < len(parsed):
        raise CascadeError(f"--baseline {opts.baseline}: there are only {len(parsed)} pipelines (numbered from 0)")
    qrels = dataset.qrels(opts.split, skip_bad=opts.skip_bad, report=report)
    queries = [q for q in dataset.queries(skip_bad=opts.skip_bad, report=report) if q.id in qrels]
    if not queries:
        raise CascadeError(f"{dataset.root}: no query has judgements in qrels/{opts.split}.tsv")
    executor = Executor(StageCache() if opts.use_cache else None)
    results = []
    for text, pipeline in zip(texts, parsed):
        if progress.phase:
            progress.phase(f"running {text}", None)
        results.append(_measure(str(text), pipeline, executor, queries, qrels, opts, metric_names, seconds))
    for i, r in enumerate(results):
        run = r.pop("_run")
        if opts.save_run is not None:
            path = opts.save_run if len(results) == 1 else \
                opts.save_run.with_name(f"{opts.save_run.stem}-{i}{opts.save_run.suffix}")
            write_trec_run(run, path, tag=f"cascade-{i}")
    if opts.baseline is not None:
        add_significance(results, opts.baseline, metric_names, opts.permutations)
    return {"dataset": dataset.name, "queries": len(queries), "results": results,
            "skipped": report.skipped, "problems": report.problems}


def _quote(path: str | Path) -> str:
    from cascade.core.nodes import format_value

    return format_value(str(path))


def _measure(label: str, pipeline: Pipeline, executor: Executor, queries: list[Query], qrels: Qrels,
             opts: EvalOptions, metric_names: list[str], seconds: dict[str, float]) -> dict[str, Any]:
    compiled = pipeline.compile()
    executor.run(compiled, queries)
    steps = list(compiled.steps) if isinstance(compiled, Then) else [compiled]
    outputs = _step_outputs(executor, steps, queries)
    final = outputs[-1]
    run = final.to_run()
    result = evaluate(run, qrels, opts.metrics, queries=[q.id for q in queries])
    stages = [_stage_row(str(step), executor, out, qrels, metric_names[0]) for step, out in zip(steps, outputs)]
    total = float(sum(s["seconds"] for s in stages))
    secs = {"search": round(total, 4)}
    if "index" in seconds:
        secs = {"index": round(seconds["index"], 4), **secs}
    return {"pipeline": label, "metrics": result.mean, "seconds": secs, "stages": stages,
            "per_query": result.per_query, "_run": run}


def _step_outputs(executor: Executor, steps: list[Pipeline], queries: list[Query]) -> list[Candidates]:
    """Each step's output, from the executor's memo (the run above computed them all)."""
    outs = [executor.run(steps[0], queries)]
    for step in steps[1:]:
        outs.append(executor.run(step, queries, outs[-1]))
    return outs


def _stage_row(label: str, executor: Executor, out: Candidates, qrels: Qrels, metric: str) -> dict[str, Any]:
    record = executor.record_of(out)
    ms = record.query_seconds * 1000
    sample = ms if record.latency_sample is None else record.latency_sample * 1000
    counts = np.diff(out.offsets)
    depth = int(counts.max()) if len(counts) else 0
    run = out.to_run()
    row: dict[str, Any] = {
        "stage": label,
        "seconds": round(record.seconds, 4),
        "latency_ms": {"mean": _r(ms.mean()), "p50": _r(np.percentile(sample, 50)) if len(sample) else 0.0,
                       "p95": _r(np.percentile(sample, 95)) if len(sample) else 0.0},
        "candidates": _r(counts.mean()) if len(counts) else 0.0,
        "cached": record.cached,
    }
    if depth:
        row["recall"] = {f"R@{depth}": evaluate(run, qrels, [f"R@{depth}"]).mean[f"R@{depth}"]}
        row["oracle"] = {metric: evaluate(oracle_run(run, qrels), qrels, [metric]).mean[metric]}
    return row


def _r(x: float) -> float:
    return round(float(x), 3)


def oracle_run(run: Run, qrels: Qrels) -> Run:
    """The run reordered perfectly within its own candidates: judged relevance first."""
    out: Run = {}
    for qid, docs in run.items():
        judged = qrels.get(qid, {})
        n = len(docs)
        # keep the original order among equally relevant documents
        ranked = sorted(docs.items(), key=lambda item: -item[1])
        out[qid] = {d: judged.get(d, 0) * n + (n - i) / (n + 1) for i, (d, _) in enumerate(ranked)}
    return out


def add_significance(results: list[dict[str, Any]], baseline: int, metric_names: list[str],
                     permutations: int) -> None:
    """Paired t-test and randomisation test against the baseline, Holm-corrected across pipelines."""
    base = results[baseline]["per_query"]
    others = [i for i in range(len(results)) if i != baseline]
    for metric in metric_names:
        for test in ("t_test", "randomization"):
            raw = []
            for i in others:
                a, b = _aligned(base, results[i]["per_query"], metric)
                raw.append(paired_t_test(a, b) if test == "t_test" else
                           paired_randomization_test(a, b, n_permutations=permutations))
            for i, p, (adj, reject) in zip(others, raw, holm_bonferroni(raw, ALPHA)):
                sig = results[i].setdefault("significance", {}).setdefault(metric, {})
                sig[test] = p
                sig[f"{test}_holm"] = adj
                sig[f"{test}_significant"] = reject
    results[baseline]["significance"] = "baseline"


def _aligned(base: dict[str, dict[str, float]], other: dict[str, dict[str, float]],
             metric: str) -> tuple[np.ndarray, np.ndarray]:
    qids = sorted(set(base) | set(other))
    a = np.array([base.get(q, {}).get(metric, 0.0) for q in qids])
    b = np.array([other.get(q, {}).get(metric, 0.0) for q in qids])
    return a, b


def strip_per_query(report: dict[str, Any]) -> dict[str, Any]:
    for r in report["results"]:
        r.pop("per_query", None)
    return report


__all__ = ["EvalOptions", "Progress", "run_experiment", "oracle_run", "add_significance", "strip_per_query"]
