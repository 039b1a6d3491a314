"""One rendering of an experiment: the tables are built once (:func:`tables`) and written as
Markdown (``--report``), as Rich tables (the terminal) or as JSON (``--json``).

Tables: the results (one row per pipeline, † where both significance tests reject after
Holm's correction), the p-values against the baseline, and one stage table per pipeline with
each step's candidates, recall at its depth, oracle bound and latency (mean, p50, p95 and how
it was timed; "–" where a stage has no latency sample).

>>> from cascade.evaluation.results import ExperimentResult, Latency, PipelineResult, StageResult
>>> stage = StageResult("bm25", 0.02, 0.05, Latency(0.066, None, None, "shared"), 100.0)
>>> result = ExperimentResult("toy", 300, [PipelineResult("bm25", {"nDCG@10": 0.5}, {"search": 0.02}, [stage])])
>>> print(markdown(result).splitlines()[4])
| 0 | `bm25` | 0.5000 | 0.066 |
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from cascade.evaluation.results import TIMING_NAMES, TIMING_NOTES, ExperimentResult, PipelineResult, StageResult

SIGNIFICANT = "†"  # both tests significant after Holm correction
ABSENT = "–"


@dataclass
class TableData:
    """A table as text cells: ``code`` columns hold pipeline strings, ``right`` columns numbers."""

    title: str
    header: list[str]
    rows: list[list[str]]
    right: set[int] = field(default_factory=set)
    code: set[int] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)


def tables(result: ExperimentResult) -> list[TableData]:
    """The experiment's tables: results, significance (with a baseline), stages per pipeline."""
    out = [results_table(result)]
    if result.baseline is not None and len(result.pipelines) > 1:
        out.append(significance_table(result))
    if any(p.sessions for p in result.pipelines):
        out.append(sessions_table(result))
    if result.split:
        out.append(split_table(result))
    out += [stage_table(p) for p in result.pipelines]
    return out


def results_table(result: ExperimentResult) -> TableData:
    metrics = result.metric_names
    judged = list(dict.fromkeys(name for p in result.pipelines for name in p.judged))
    rows = [[str(i), p.label, *(f"{p.metrics[m]:.4f}{SIGNIFICANT if p.significant(m) else ''}" for m in metrics),
             *(_number(p.judged.get(name)) for name in judged), f"{p.mean_latency_ms:.3f}"]
            for i, p in enumerate(result.pipelines)]
    notes = []
    if judged:
        notes.append(f"{', '.join(judged)}: the share of each query's top k that has a judgment (mean over queries "
                     "with results); unjudged documents count as not relevant in the metrics.")
    base = result.baseline
    if base is not None:
        number = result.pipelines.index(base)
        notes.append(f"{SIGNIFICANT}: paired t-test and randomisation test both p < 0.05 against the baseline "
                     f"(#{number}) after Holm-Bonferroni correction across pipelines.")
    if result.qrels_missing_docs:
        notes.append(f"Warning: {result.qrels_missing_docs:,} judged document(s) are not in the index (e.g. "
                     f"{', '.join(result.qrels_missing_examples)}); no pipeline can retrieve them, so they lower "
                     "the metrics.")
    return TableData(f"{result.dataset}: {result.queries} queries", ["#", "pipeline", *metrics, *judged, "ms/query"],
                     rows, right={0, *range(2, len(metrics) + len(judged) + 3)}, code={1}, notes=notes)


def _number(value: float | None) -> str:
    return ABSENT if value is None else f"{value:.4f}"


def significance_table(result: ExperimentResult) -> TableData:
    base = result.baseline
    assert base is not None
    rows = [[p.label, metric, f"{s.t_test:.4g}", f"{s.t_test_holm:.4g}", f"{s.randomization:.4g}",
             f"{s.randomization_holm:.4g}"]
            for p in result.pipelines for metric, s in p.significance.items()]
    header = ["pipeline", "metric", "t-test p", "Holm", "randomisation p", "Holm"]
    return TableData(f"significance against the baseline #{result.pipelines.index(base)} {base.label}", header,
                     rows, right={2, 3, 4, 5}, code={0})


def sessions_table(result: ExperimentResult) -> TableData:
    """Session measures per pipeline (cascade.evaluation.sessions)."""
    names = list(dict.fromkeys(name for p in result.pipelines for name in p.sessions))
    rows = [[str(i), p.label, *(_number(p.sessions.get(n)) for n in names)] for i, p in enumerate(result.pipelines)]
    notes = ["sDCG: per-query DCG discounted by 1 + log4(position in session) (Järvelin et al. 2008); nsDCG: over "
             "the same session with ideal rankings; NUM: U-measure of the session read as one trailtext, "
             "session-level labels, normalised by the ideal session (Chen, Dou & Mao 2024)."]
    return TableData(f"sessions: {result.sessions} evaluated", ["#", "pipeline", *names], rows,
                     right={0, *range(2, len(names) + 2)}, code={1}, notes=notes)


def split_table(result: ExperimentResult) -> TableData:
    """Metrics per split of the queries by similarity to training queries (cascade.evaluation.splits)."""
    info = result.split
    metrics = result.metric_names
    rows = [[str(i), p.label, split, str(info.get(split, "")), *(_number(p.splits[split].get(m)) for m in metrics)]
            for i, p in enumerate(result.pipelines) for split in ("interpolation", "extrapolation")
            if split in p.splits]
    notes = [f"{info.get('similarity', 'similarity')} over {info.get('training_queries', '?')} training queries "
             f"({info.get('training', '')}); interpolation: at or above the median, {info.get('threshold', 0):.4f}."]
    return TableData("interpolation / extrapolation", ["#", "pipeline", "split", "queries", *metrics], rows,
                     right={0, 3, *range(4, len(metrics) + 4)}, code={1}, notes=notes)


def stage_table(pipeline: PipelineResult) -> TableData:
    """Each top-level step; the cached column only when a step came from the stage cache."""
    oracle = next((name for s in pipeline.stages for name in s.oracle), "")
    header = ["stage", "cands", "recall", f"oracle {oracle}".strip(), "ms mean", "p50", "p95", "timing", "cached"]
    rows = [_stage_row(s) for s in pipeline.stages]
    if not any(s.cached for s in pipeline.stages):
        header, rows = header[:-1], [row[:-1] for row in rows]
    if any(s.usage for s in pipeline.stages):  # LLM stages: calls and tokens
        header = header + ["LLM calls (cached)", "tokens in+out"]
        rows = [row + _usage_cells(s.usage) for row, s in zip(rows, pipeline.stages)]
    timings = sorted({s.latency.timing for s in pipeline.stages})
    notes = [f"timing {TIMING_NAMES.get(t, t)}: {TIMING_NOTES.get(t, '')}" for t in timings]
    return TableData(f"stages of {pipeline.label}", header, rows, right={1, 2, 3, 4, 5, 6}, code={0}, notes=notes)


def _stage_row(s: StageResult) -> list[str]:
    lat = s.latency
    recall = ", ".join(f"{k} {v:.4f}" for k, v in s.recall.items())
    oracle = ", ".join(f"{v:.4f}" for v in s.oracle.values())
    return [s.stage, f"{s.candidates:.1f}", recall, oracle, f"{lat.mean_ms:.3f}", _ms(lat.p50_ms), _ms(lat.p95_ms),
            lat.describe(), "yes" if s.cached else ""]


def _usage_cells(usage: dict[str, float]) -> list[str]:
    if not usage:
        return ["", ""]
    return [f"{usage.get('calls', 0):.0f} ({usage.get('cached_calls', 0):.0f})",
            f"{usage.get('prompt_tokens', 0):.0f}+{usage.get('completion_tokens', 0):.0f}"]


def _ms(value: float | None) -> str:
    return ABSENT if value is None else f"{value:.3f}"


# -- Markdown -------------------------------------------------------------------------------


def markdown(result: ExperimentResult, command: str | None = None) -> str:
    """The experiment as Markdown: a heading, the command, then every table with its notes."""
    first, *rest = tables(result)
    lines = [f"# {first.title}", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += _markdown_table(first)
    for t in rest:
        lines += ["", f"## {t.title}", ""] + _markdown_table(t)
    return "\n".join(lines) + "\n"


def _markdown_table(t: TableData) -> list[str]:
    def cell(i: int, text: str) -> str:
        text = text.replace("|", "\\|")
        return f"`{text}`" if i in t.code and text else text

    lines = ["| " + " | ".join(t.header) + " |",
             "|" + "".join("---:|" if i in t.right else "---|" for i in range(len(t.header)))]
    lines += ["| " + " | ".join(cell(i, c) for i, c in enumerate(row)) + " |" for row in t.rows]
    for note in t.notes:
        lines += ["", note]
    return lines


# -- terminal (Rich) ------------------------------------------------------------------------


def rich_tables(result: ExperimentResult) -> list[Any]:
    """Rich renderables for a console: each table, then its notes."""
    from rich.table import Table
    from rich.text import Text

    out: list[Any] = []
    for t in tables(result):
        table = Table(title=t.title, title_justify="left")
        for i, name in enumerate(t.header):
            table.add_column(name, justify="right" if i in t.right else "left", overflow="fold")
        for row in t.rows:
            table.add_row(*row)
        out.append(table)
        out += [Text(note) for note in t.notes]
    return out


# -- JSON -----------------------------------------------------------------------------------


def to_json(result: ExperimentResult, per_query: bool = False) -> str:
    """The one JSON object ``cascade eval --json`` prints."""
    return json.dumps(result.to_dict(per_query=per_query))
