"""Effectiveness measures through ir_measures (trec_eval-compatible definitions).

Measures are named in ir_measures syntax: ``nDCG@10``, ``R@100``, ``P@10``, ``AP``,
``RR``, ``R(rel=2)@1000``. Names are matched case-insensitively (``ndcg@10`` works).

>>> from cascade.evaluation import evaluate
>>> qrels = {"q1": {"d1": 1, "d2": 0}}
>>> run = {"q1": {"d2": 2.0, "d1": 1.0}}
>>> round(evaluate(run, qrels, ["RR", "P@1"]).mean["RR"], 2)
0.5
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from cascade.core.errors import CascadeError
from cascade.core.types import Qrels, Run

DEFAULT_METRICS = ("nDCG@10", "R@100", "AP", "RR")


def parse_metrics(names: str | Iterable[str]) -> list[tuple[str, Any]]:
    """(display name, ir_measures measure) pairs from "nDCG@10,R@100" or a list of names."""
    if isinstance(names, str):
        names = [n for n in re.split(r",(?![^()]*\))", names) if n.strip()]
    parsed = [(n.strip(), _parse_one(n.strip())) for n in names]
    if not parsed:
        raise CascadeError("no metrics given; for example: nDCG@10,R@100,AP,RR")
    return parsed


def _parse_one(name: str) -> Any:
    import ir_measures

    try:
        return ir_measures.parse_measure(name)
    except (NameError, ValueError, TypeError, SyntaxError):
        pass
    canonical = {k.lower(): k for k in ir_measures.measures.registry}
    head = re.match(r"[^@(]+", name)
    if head and head.group(0).lower() in canonical:
        fixed = canonical[head.group(0).lower()] + name[len(head.group(0)):]
        try:
            return ir_measures.parse_measure(fixed)
        except (NameError, ValueError, TypeError, SyntaxError):
            pass
    raise CascadeError(f"unknown metric {name!r}; examples: nDCG@10, R@100, P@10, AP, RR, R(rel=2)@1000")


@dataclass
class Evaluation:
    """Per-query values of each metric and their aggregate, keyed by the names asked for.

    ``mean`` holds each measure's aggregate as ir_measures defines it (``measure.aggregator()``):
    the mean over queries for most measures, the sum for the counts NumQ, NumRet, NumRel and
    NumRelRet, as trec_eval reports them.
    """

    mean: dict[str, float]
    per_query: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def n_queries(self) -> int:
        return len(self.per_query)


def evaluate(run: Run, qrels: Qrels, metrics: str | Sequence[str] = DEFAULT_METRICS,
             queries: Iterable[str] | None = None) -> Evaluation:
    """Evaluate a run against qrels: per-query values from ``ir_measures.iter_calc``, aggregated
    by each measure's own ir_measures aggregator (so they equal ``ir_measures.calc_aggregate``).

    Without ``queries`` the queries are those with both results and judgements, as trec_eval's
    default. Pass ``queries`` (the ids that were searched) to also count each judged query with
    no results, as ``trec_eval -c`` does: it contributes 1 to NumQ, its relevant documents to
    NumRel and 0 to every other measure. With no query at all every aggregate is 0.

    >>> qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    >>> e = evaluate({"q1": {"d1": 1.0}}, qrels, ["RR", "NumQ", "NumRel"], queries=["q1", "q2"])
    >>> e.mean
    {'RR': 0.5, 'NumQ': 2.0, 'NumRel': 2.0}
    """
    import ir_measures

    parsed = parse_metrics(metrics)
    by_measure = {m: name for name, m in parsed}
    per_query: dict[str, dict[str, float]] = {}
    judged_run = {q: docs for q, docs in run.items() if q in qrels and docs}
    if judged_run:
        # qrels cut to the run's queries: ir_measures would otherwise score every judged query missing
        # from the run as 0 (NumQ included), which is what ``queries`` is for
        judged_qrels = {q: qrels[q] for q in judged_run}
        for row in ir_measures.iter_calc([m for _, m in parsed], judged_qrels, judged_run):
            per_query.setdefault(row.query_id, {})[by_measure[row.measure]] = float(row.value)
    if queries is not None:
        for qid in queries:
            if qid in qrels and qid not in per_query:
                per_query[qid] = {name: _without_results(m, qrels[qid]) for name, m in parsed}
    return Evaluation(mean=_aggregate(parsed, per_query), per_query=per_query)


def _without_results(measure: Any, judged: dict[str, int]) -> float:
    """A measure's value for a judged query that retrieved nothing (trec_eval -c)."""
    if measure.NAME == "NumQ":
        return 1.0
    if measure.NAME == "NumRel":
        threshold = measure.params.get("rel", 1)
        return float(sum(1 for rel in judged.values() if rel >= threshold))
    return 0.0


def _aggregate(parsed: list[tuple[str, Any]], per_query: dict[str, dict[str, float]]) -> dict[str, float]:
    """Each measure's aggregate through its ir_measures aggregator (mean, or sum for counts)."""
    out: dict[str, float] = {}
    for name, measure in parsed:
        if not per_query:
            out[name] = 0.0
            continue
        agg = measure.aggregator()
        for values in per_query.values():
            agg.add(values[name])
        out[name] = float(agg.result())
    return out
