"""Experiments: several pipelines on one dataset, measured stage by stage; the engine of `cascade eval`.

All pipelines run through one :class:`~cascade.core.executor.Executor`, so a prefix they
share (``bm25 % 1000``) runs once. Every pipeline is evaluated on the same queries: every
judged query (one with no results counts 0, see :func:`~cascade.evaluation.metrics.evaluate`),
so the per-query vectors of two pipelines align exactly, the rule
:mod:`~cascade.evaluation.significance` states. The result is an
:class:`~cascade.evaluation.results.ExperimentResult` (see :func:`run_experiment`).
"""

from __future__ import annotations

import functools
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cascade.core.candidates import Candidates
from cascade.core.errors import CascadeError
from cascade.core.executor import Executor
from cascade.core.nodes import Pipeline, Then, format_value
from cascade.core.registry import Context, lookup
from cascade.core.types import Qrels, Query, ReadReport, Run
from cascade.data.beir import BeirDataset
from cascade.data.trec import write_trec_run
from cascade.evaluation.index_check import check_index_fits
from cascade.evaluation.metrics import evaluate, parse_metrics
from cascade.evaluation.results import ExperimentResult, Latency, PipelineResult, Significance, StageResult
from cascade.evaluation.sessions import Sessions, evaluate_sessions, read_sessions
from cascade.evaluation.significance import holm_bonferroni, paired_randomization_test, paired_t_test, paired_vectors
from cascade.evaluation.splits import metrics_by_split, read_training_queries, split_by_similarity, training_similarity
from cascade.fuse.to_docs import to_documents
from cascade.index import bm25_formula
from cascade.index.cache import cached_index
from cascade.index.index import Index
from cascade.pipeline import builtins
from cascade.pipeline.cache import StageCache
from cascade.pipeline.parse import parse
from cascade.text.analyzer import Analyzer

ALPHA = 0.05
BM25_STAGES = ("bm25", "rm3", "bm25_rm3")  # the stages --k1/--b reach when a pipeline does not set them


@dataclass
class EvalOptions:
    """How to evaluate. ``k1``/``b`` apply to every BM25_STAGES stage of a pipeline string that
    does not set them; ``analyzer`` is used to build the index (None: the default analyzer) and,
    with ``index_dir``, must be the given index's (None: whatever it has)."""

    metrics: str | Sequence[str] = "nDCG@10,R@100"
    split: str = "test"
    k1: float = bm25_formula.K1
    b: float = bm25_formula.B
    analyzer: Analyzer | None = None
    skip_bad: bool = False
    use_cache: bool = True
    save_run: Path | None = None
    baseline: int | None = None
    permutations: int = 10_000
    judge_holes: Path | None = None  # a judge's qrels filling the pairs the split's qrels lack (never overriding)
    judged_depths: tuple[int, ...] = (10,)  # judged@k reported next to the metrics
    sessions: Path | None = None  # a session file: sDCG, nsDCG and NUM at session_depth (evaluation/sessions.py)
    session_depth: int = 10
    split_by_training: Path | None = None  # training queries: metrics per interpolation / extrapolation split


@dataclass
class Progress:
    """Callbacks a front end can hook to show progress (all optional)."""

    indexing: Callable[[int], None] | None = None
    searching: Callable[[int], None] | None = None
    phase: Callable[[str, int | None], None] | None = None  # (description, total or None)
    saved: Callable[[int, PipelineResult], None] | None = None  # a pipeline's run was written to its run_file
    # a warning for the user (e.g. judged documents missing from the index); None: a line on stderr
    warn: Callable[[str], None] | None = None


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


@dataclass
class _Setting:
    """What the experiment's parts share: the dataset, its judgements (read once), options."""

    dataset: BeirDataset
    opts: EvalOptions
    progress: Progress
    report: ReadReport = field(default_factory=ReadReport)
    seconds: dict[str, float] = field(default_factory=dict)
    index: Index | None = None  # the index the pipelines searched, once opened or built
    sessions: Sessions | None = None  # with opts.sessions: the sessions, their queries checked
    splits: dict[str, str] | None = None  # with opts.split_by_training: query id -> split
    scratch: Path | None = None  # without the index cache: the folder of the index built for this run

    @functools.cached_property
    def qrels(self) -> Qrels:
        human = self.dataset.qrels(self.opts.split, skip_bad=self.opts.skip_bad, report=self.report)
        if self.opts.judge_holes is None:
            return human
        from cascade.evaluation.judge import fill_holes, read_judged_qrels

        return fill_holes(human, read_judged_qrels(self.opts.judge_holes, self.dataset, human))


def _index_provider(s: _Setting, index_dir: Path | None) -> Callable[[], Index]:
    def provide() -> Index:
        start = time.perf_counter()
        if index_dir is not None:
            index = Index.open(index_dir)
            check_index_fits(index, s.dataset, s.qrels, s.opts.analyzer)
        else:
            index = _build_index(s)
        s.seconds["index"] = time.perf_counter() - start
        s.index = index
        return index

    return provide


def _build_index(s: _Setting) -> Index:
    if s.progress.phase:
        s.progress.phase(f"indexing {s.dataset.name}", s.dataset.count_docs())
    analyzer = s.opts.analyzer or Analyzer()
    corpus = lambda: s.dataset.corpus(skip_bad=s.opts.skip_bad, report=s.report)  # noqa: E731
    if s.opts.use_cache:
        index, _, _ = cached_index(s.dataset.name, s.dataset.content_hash(), corpus, analyzer=analyzer,
                                   skip_bad=s.opts.skip_bad, progress=s.progress.indexing)
        return index
    s.scratch = Path(tempfile.mkdtemp(prefix="cascade-eval-"))
    return Index.build(corpus(), s.scratch / "index", analyzer=analyzer, progress=s.progress.indexing)


def bm25_defaults(opts: EvalOptions) -> dict[str, dict[str, Any]]:
    """Context.stage_defaults carrying ``opts.k1``/``opts.b`` to every BM25 stage (checked here,
    so a bad value is reported as an option, not at some pipeline's token)."""
    builtins.load()
    values = {"k1": opts.k1, "b": opts.b}
    try:
        lookup("bm25").check([], values)  # type: ignore[union-attr]
    except CascadeError as exc:
        raise CascadeError(f"--k1/--b: {exc}") from None
    return {name: values for name in BM25_STAGES}


def run_experiment(dataset_dir: str | Path, pipelines: Sequence[str | Pipeline] = ("bm25",), *,
                   runs: Sequence[str | Path] = (), index_dir: Path | None = None, opts: EvalOptions | None = None,
                   progress: Progress | None = None) -> ExperimentResult:
    """Evaluate pipelines (strings in the pipeline grammar, or Pipeline objects) and stored runs
    (evaluated first) on the dataset's judged queries.

    Returns an :class:`~cascade.evaluation.results.ExperimentResult`: ``dataset``, ``queries``
    (the number evaluated), ``pipelines`` (a :class:`~cascade.evaluation.results.PipelineResult`
    each: ``label``, ``metrics``, ``seconds``, ``stages``, ``per_query``, ``significance`` by
    metric and ``is_baseline``), ``skipped`` and ``problems``; each stage is a
    :class:`~cascade.evaluation.results.StageResult` with its
    :class:`~cascade.evaluation.results.Latency`. ``to_dict()`` is the ``--json`` object.

    >>> from cascade.evaluation.experiment import EvalOptions, run_experiment
    >>> result = run_experiment("../shared/datasets/scifact", ["bm25", "bm25_rm3"],
    ...                         opts=EvalOptions(metrics="nDCG@10", baseline=0))  # doctest: +SKIP
    >>> rm3 = result.pipelines[1]  # doctest: +SKIP
    >>> rm3.label, round(rm3.metrics["nDCG@10"], 4), rm3.significance["nDCG@10"].significant  # doctest: +SKIP
    ('bm25_rm3', 0.6478, True)
    >>> [(s.stage, s.latency.timing, s.latency.p50_ms is not None) for s in rm3.stages]  # doctest: +SKIP
    [('bm25(k=10)', 'sampled', True), ('rm3', 'per-query', True)]
    """
    opts = opts or EvalOptions()
    s = _Setting(BeirDataset(dataset_dir), opts, progress or Progress())
    try:
        return _experiment(s, pipelines, runs, index_dir)
    finally:
        if s.scratch is not None:  # an index built for this run only (--no-cache) is not left behind
            shutil.rmtree(s.scratch, ignore_errors=True)


def _experiment(s: _Setting, pipelines: Sequence[str | Pipeline], runs: Sequence[str | Path],
                index_dir: Path | None) -> ExperimentResult:
    opts = s.opts
    training = _read_protocol_files(s)  # before anything is built: a bad file fails fast
    metric_names = [name for name, _ in parse_metrics(opts.metrics)]
    ctx = Context(index_provider=_index_provider(s, index_dir), root=s.dataset.root,
                  on_progress=_stage_progress(s.progress), stage_defaults=bm25_defaults(opts))
    texts = [f"run({format_value(str(r))})" for r in runs] + list(pipelines)
    if not texts:
        raise CascadeError("nothing to evaluate: give a pipeline or a run")
    parsed = [p if isinstance(p, Pipeline) else parse(p, ctx) for p in texts]
    if opts.baseline is not None and not 0 <= opts.baseline < len(parsed):
        raise CascadeError(f"--baseline {opts.baseline}: there are only {len(parsed)} pipelines (numbered from 0)")
    queries = [q for q in s.dataset.queries(skip_bad=opts.skip_bad, report=s.report) if q.id in s.qrels]
    if not queries:
        raise CascadeError(f"{s.dataset.root}: no query has judgements in qrels/{opts.split}.tsv")
    if opts.baseline is not None and len(queries) < 2:
        raise CascadeError(f"--baseline: significance tests need at least 2 judged queries; {s.dataset.name} has 1")
    split_info = _prepare_protocols(s, queries, training)
    executor = Executor(StageCache() if opts.use_cache else None)
    results = []
    for i, (text, pipeline) in enumerate(zip(texts, parsed)):
        if s.progress.phase:
            s.progress.phase(f"running {text}", len(queries))
        result, run = _measure(str(text), pipeline, executor, queries, s, metric_names)
        if opts.save_run is not None:
            _save_run(result, run, i, len(texts), opts.save_run, s.progress)
        results.append(result)
    if opts.baseline is not None:
        add_significance(results, opts.baseline, metric_names, opts.permutations)
    result = ExperimentResult(s.dataset.name, len(queries), results, s.report.skipped, list(s.report.problems),
                              sessions=len(s.sessions or {}), split=split_info)
    if s.index is not None:
        result.qrels_missing_docs, result.qrels_missing_examples = missing_judged_docs(s.index, s.qrels, queries)
        if result.qrels_missing_docs:
            _warn(s.progress, qrels_warning(result, f"qrels/{opts.split}.tsv"))
    return result


def _read_protocol_files(s: _Setting) -> list[Query] | None:
    """Read the session file (into ``s.sessions``) and the training queries (returned), when asked."""
    if s.opts.sessions is not None:
        s.sessions = read_sessions(s.opts.sessions)
    return None if s.opts.split_by_training is None else read_training_queries(s.opts.split_by_training)


def _prepare_protocols(s: _Setting, queries: list[Query], train: list[Query] | None) -> dict[str, Any]:
    """Check the sessions' query ids and split the queries by similarity to the training queries
    (before any pipeline runs); returns how queries were split (empty when not asked)."""
    if s.sessions is not None:
        judged = {q.id for q in queries}
        unknown = [q for qs in s.sessions.values() for q in qs if q not in judged]
        if unknown:
            raise CascadeError(f"--sessions {s.opts.sessions}: {len(unknown)} query id(s) are not judged queries of "
                               f"{s.dataset.name} (e.g. {', '.join(unknown[:3])})")
    if train is None:
        return {}
    similarity = training_similarity(queries, train, s.opts.analyzer)
    s.splits, threshold = split_by_similarity(similarity)
    counts = {name: sum(1 for v in s.splits.values() if v == name) for name in ("interpolation", "extrapolation")}
    return {"training": str(s.opts.split_by_training), "training_queries": len(train),
            "similarity": "max TF-IDF cosine to a training query", "threshold": round(threshold, 4), **counts}


def missing_judged_docs(index: Index, qrels: Qrels, queries: Sequence[Query], examples: int = 5
                        ) -> tuple[int, list[str]]:
    """How many distinct documents judged for ``queries`` the index does not hold (absent from
    the corpus, or skipped as bad records), and up to ``examples`` of them (relevant ones first).
    No pipeline over the index can retrieve them, so they lower recall-like metrics."""
    judged: dict[str, int] = {}
    for q in queries:
        for doc, rel in qrels.get(q.id, {}).items():
            judged[doc] = max(rel, judged.get(doc, rel))
    ids = sorted(judged)
    probe = [f"{d}#0" for d in ids] if index.passages else ids  # a passage index holds documents' first passages
    absent = [d for d, n in zip(ids, index.doc_numbers(probe).tolist()) if n < 0]
    absent.sort(key=lambda d: judged[d] <= 0)  # relevant first, else in id order
    return len(absent), absent[:examples]


def qrels_warning(result: ExperimentResult, qrels_name: str = "the qrels") -> str:
    """The one-line warning about judged documents missing from the index."""
    shown = ", ".join(result.qrels_missing_examples)
    return (f"warning: {result.qrels_missing_docs:,} document(s) judged in {qrels_name} are not in the index "
            f"(e.g. {shown}); no pipeline can retrieve them, so they lower the metrics")


def _warn(progress: Progress, message: str) -> None:
    if progress.warn is not None:
        progress.warn(message)
    else:
        print(message, file=sys.stderr, flush=True)


def run_file_for(path: Path, position: int, count: int) -> Path:
    """Where ``--save-run path`` puts the run of the pipeline at ``position``: ``path`` itself
    for a single pipeline, else ``path`` with ``-<position>`` before its suffix."""
    return path if count == 1 else path.with_name(f"{path.stem}-{position}{path.suffix}")


def run_tag(label: str) -> str:
    """A TREC run tag naming the pipeline: its string without whitespace."""
    return "".join(label.split())


def _save_run(result: PipelineResult, run: Run, position: int, count: int, path: Path, progress: Progress) -> None:
    result.run_file = run_file_for(path, position, count)
    write_trec_run(run, result.run_file, tag=run_tag(result.label))
    if progress.saved:
        progress.saved(position, result)


def _measure(label: str, pipeline: Pipeline, executor: Executor, queries: list[Query], s: _Setting,
             metric_names: list[str]) -> tuple[PipelineResult, Run]:
    compiled = pipeline.compile()
    executor.run(compiled, queries)
    if s.progress.searching:
        s.progress.searching(len(queries))
    steps = list(compiled.steps) if isinstance(compiled, Then) else [compiled]
    outputs = _step_outputs(executor, steps, queries)
    run = outputs[-1].to_run()
    ids = [q.id for q in queries]
    result = evaluate(run, s.qrels, s.opts.metrics, queries=ids)
    stages = [_stage_result(str(step), executor, out, s.qrels, metric_names[0], ids)
              for step, out in zip(steps, outputs)]
    seconds = {"search": round(sum(st.seconds for st in stages), 4)}
    if "index" in s.seconds:
        seconds = {"index": round(s.seconds["index"], 4), **seconds}
    out = PipelineResult(label, result.mean, seconds, stages, result.per_query,
                         judged=judged_at(run, s.qrels, s.opts.judged_depths))
    if s.sessions is not None:
        out.sessions = evaluate_sessions(run, s.qrels, s.sessions, s.opts.session_depth).mean
    if s.splits is not None:
        out.splits = metrics_by_split(result.per_query, s.splits)
    return out, run


def judged_at(run: Run, qrels: Qrels, depths: Sequence[int]) -> dict[str, float]:
    """``judged@k`` for each depth: the mean, over the queries with results and judgments, of the
    fraction of a query's top k (or of all its results, when fewer) that has a judgment
    (ir_measures' ``Judged@k``). Pipelines that retrieve documents no assessor saw score low here,
    and their metrics then count those documents as not relevant."""
    if not depths:
        return {}
    mean = evaluate(run, qrels, [f"Judged@{k}" for k in depths]).mean
    return {f"judged@{k}": round(mean[f"Judged@{k}"], 4) for k in depths}


def _step_outputs(executor: Executor, steps: list[Pipeline], queries: list[Query]) -> list[Candidates]:
    """Each step's output, from the executor's memo (the run above computed them all)."""
    outs = [executor.run(steps[0], queries)]
    for step in steps[1:]:
        outs.append(executor.run(step, queries, outs[-1]))
    return outs


def _stage_result(label: str, executor: Executor, out: Candidates, qrels: Qrels, metric: str,
                  queries: list[str]) -> StageResult:
    """A step's row: latency from its executor record (mean of query_seconds, percentiles of its
    latency sample), candidates per query, recall at its depth and the oracle bound."""
    record = executor.record_of(out)
    counts = np.diff(out.offsets)
    depth = int(counts.max()) if len(counts) else 0
    recall: dict[str, float] = {}
    oracle: dict[str, float] = {}
    if depth:
        # passages of a passage index: judged as the documents they belong to (MaxP)
        run = (to_documents(out, out.space) if getattr(out.space, "passages", None) else out).to_run()
        recall = evaluate(run, qrels, [f"R@{depth}"], queries=queries).mean
        oracle = evaluate(oracle_run(run, qrels), qrels, [metric], queries=queries).mean
    return StageResult(label, round(float(record.query_seconds.sum()), 4), round(record.seconds, 4),
                       Latency.of(record.query_seconds, record.latency_sample, record.timing),
                       round(float(counts.mean()), 3) if len(counts) else 0.0, recall, oracle, record.cached,
                       dict(out.usage))


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


def add_significance(results: list[PipelineResult], baseline: int, metric_names: list[str],
                     permutations: int) -> None:
    """Paired t-test and randomisation test of every pipeline against the baseline, per metric,
    Holm-corrected across the pipelines (Holm 1979); per-query vectors aligned by query id."""
    base = results[baseline]
    base.is_baseline = True
    others = [r for i, r in enumerate(results) if i != baseline]
    for metric in metric_names:
        pairs = [paired_vectors(_values(base, metric), _values(r, metric)) for r in others]
        t_raw = [paired_t_test(a, b) for a, b in pairs]
        r_raw = [paired_randomization_test(a, b, n_permutations=permutations) for a, b in pairs]
        for r, t, (t_adj, t_sig), p, (p_adj, p_sig) in zip(others, t_raw, holm_bonferroni(t_raw, ALPHA),
                                                          r_raw, holm_bonferroni(r_raw, ALPHA)):
            r.significance[metric] = Significance(t, t_adj, t_sig, p, p_adj, p_sig)


def _values(result: PipelineResult, metric: str) -> dict[str, float]:
    return {qid: values[metric] for qid, values in result.per_query.items()}


def strip_per_query(result: ExperimentResult) -> dict[str, Any]:
    """The result as the ``--json`` dict, without per-query values (for scripts that want a dict)."""
    return result.to_dict(per_query=False)


__all__ = ["EvalOptions", "Progress", "run_experiment", "oracle_run", "add_significance", "strip_per_query",
           "run_file_for", "run_tag", "bm25_defaults", "missing_judged_docs", "qrels_warning", "judged_at"]
