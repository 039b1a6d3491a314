"""Typed results of an experiment (:func:`~cascade.evaluation.experiment.run_experiment`).

An :class:`ExperimentResult` holds one :class:`PipelineResult` per pipeline or stored run;
each holds its metrics, one :class:`StageResult` per top-level step (with its
:class:`Latency`) and, with a baseline, one :class:`Significance` per metric. ``to_dict()``
gives the JSON ``cascade eval --json`` prints; ``ExperimentResult.from_dict`` reads it back.

>>> lat = Latency.of(np.array([0.001, 0.003]), None, "shared")
>>> lat.to_dict(), lat.describe()
({'mean': 2.0, 'p50': None, 'p95': None}, 'batch mean')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cascade.core.candidates import PER_QUERY, SAMPLED, SHARED

# how each timing reads in tables
TIMING_NAMES = {PER_QUERY: "per-query", SAMPLED: "sampled", SHARED: "batch mean"}
TIMING_NOTES = {
    PER_QUERY: "each query timed on its own",
    SAMPLED: "mean from the batch; p50/p95 from up to 100 queries answered again one by one",
    SHARED: "only the batch was timed: its mean per query, no percentiles",
}


def _r(x: float, digits: int = 3) -> float:
    return round(float(x), digits)


@dataclass(frozen=True)
class Latency:
    """A stage's latency per query in milliseconds, and how it was measured (``timing``:
    PER_QUERY, SAMPLED or SHARED, see :mod:`cascade.core.candidates`); p50/p95 are None when
    the stage has no latency sample (SHARED)."""

    mean_ms: float
    p50_ms: float | None
    p95_ms: float | None
    timing: str

    @classmethod
    def of(cls, query_seconds: np.ndarray, sample: np.ndarray | None, timing: str) -> "Latency":
        """Mean of ``query_seconds``; percentiles of ``sample`` when there is one (the executor's rule)."""
        mean = _r(np.mean(query_seconds) * 1000) if len(query_seconds) else 0.0
        if sample is None or not len(sample):
            return cls(mean, None, None, timing)
        p50, p95 = np.percentile(np.asarray(sample) * 1000, [50, 95])
        return cls(mean, _r(p50), _r(p95), timing)

    def describe(self) -> str:
        return TIMING_NAMES.get(self.timing, self.timing)

    def to_dict(self) -> dict[str, float | None]:
        return {"mean": self.mean_ms, "p50": self.p50_ms, "p95": self.p95_ms}


@dataclass(frozen=True)
class StageResult:
    """One top-level step of a pipeline: ``seconds`` is its own work (the sum of its queries'
    latencies, one-off preparation left out), ``wall_seconds`` the executor's wall time (with
    preparation and the children it needed); ``candidates`` per query on average; ``recall`` and
    ``oracle`` at its depth (empty when it returned nothing); ``cached``: read from the stage cache;
    ``usage``: a model-calling stage's calls, cached calls, prompt and completion tokens and model
    seconds (LLM stages; empty for the others)."""

    stage: str
    seconds: float
    wall_seconds: float
    latency: Latency
    candidates: float
    recall: dict[str, float] = field(default_factory=dict)
    oracle: dict[str, float] = field(default_factory=dict)
    cached: bool = False
    usage: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"stage": self.stage, "seconds": self.seconds, "wall_seconds": self.wall_seconds,
                               "latency_ms": self.latency.to_dict(), "timing": self.latency.timing,
                               "candidates": self.candidates, "cached": self.cached}
        if self.recall:
            row["recall"] = dict(self.recall)
        if self.oracle:
            row["oracle"] = dict(self.oracle)
        if self.usage:
            row["usage"] = dict(self.usage)
        return row

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StageResult":
        lat = d["latency_ms"]
        return cls(d["stage"], d["seconds"], d.get("wall_seconds", d["seconds"]),
                   Latency(lat["mean"], lat["p50"], lat["p95"], d.get("timing", SHARED)), d["candidates"],
                   dict(d.get("recall", {})), dict(d.get("oracle", {})), d.get("cached", False),
                   dict(d.get("usage", {})))


@dataclass(frozen=True)
class Significance:
    """One metric of one pipeline against the baseline: raw and Holm-adjusted (across the
    pipelines) p-values of the paired t-test and the paired randomisation test, and whether
    each is significant after adjustment."""

    t_test: float
    t_test_holm: float
    t_test_significant: bool
    randomization: float
    randomization_holm: float
    randomization_significant: bool

    @property
    def significant(self) -> bool:
        """Both tests significant after Holm's correction (the † of the tables)."""
        return self.t_test_significant and self.randomization_significant

    def to_dict(self) -> dict[str, float | bool]:
        return {"t_test": self.t_test, "t_test_holm": self.t_test_holm, "t_test_significant": self.t_test_significant,
                "randomization": self.randomization, "randomization_holm": self.randomization_holm,
                "randomization_significant": self.randomization_significant}


@dataclass
class PipelineResult:
    """One pipeline (or stored run): its label, aggregate ``metrics``, ``seconds``
    (``search`` = the sum of its stages' seconds, ``index`` when an index was opened or built),
    ``stages``, ``per_query`` values, ``significance`` by metric (empty without a baseline or for
    the baseline itself), ``is_baseline``, ``run_file`` when its run was saved, ``judged``
    (``judged@k``: the mean fraction of each query's top k that has a judgment, over the queries
    with results), ``sessions`` (session measures, with ``--sessions``) and ``splits`` (metrics
    per query split, e.g. interpolation / extrapolation)."""

    label: str
    metrics: dict[str, float]
    seconds: dict[str, float]
    stages: list[StageResult]
    per_query: dict[str, dict[str, float]] = field(default_factory=dict, repr=False)
    significance: dict[str, Significance] = field(default_factory=dict)
    is_baseline: bool = False
    run_file: Path | None = None
    judged: dict[str, float] = field(default_factory=dict)
    sessions: dict[str, float] = field(default_factory=dict)
    splits: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def mean_latency_ms(self) -> float:
        """Mean latency per query of the whole pipeline: its stages' means added up."""
        return float(sum(s.latency.mean_ms for s in self.stages))

    def significant(self, metric: str) -> bool:
        sig = self.significance.get(metric)
        return sig is not None and sig.significant

    def to_dict(self, per_query: bool = True, with_significance: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {"pipeline": self.label, "metrics": dict(self.metrics), "seconds": dict(self.seconds),
                             "stages": [s.to_dict() for s in self.stages]}
        if self.run_file is not None:
            d["run_file"] = str(self.run_file)
        for name in ("judged", "sessions", "splits"):
            if getattr(self, name):
                d[name] = dict(getattr(self, name))
        if with_significance:
            d["significance"] = "baseline" if self.is_baseline else \
                {m: s.to_dict() for m, s in self.significance.items()}
        if per_query:
            d["per_query"] = self.per_query
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PipelineResult":
        sig = d.get("significance")
        tests = {m: Significance(**s) for m, s in sig.items()} if isinstance(sig, dict) else {}
        return cls(d["pipeline"], dict(d["metrics"]), dict(d["seconds"]),
                   [StageResult.from_dict(s) for s in d["stages"]], d.get("per_query", {}), tests,
                   sig == "baseline", Path(d["run_file"]) if d.get("run_file") else None,
                   dict(d.get("judged", {})), dict(d.get("sessions", {})), dict(d.get("splits", {})))


@dataclass
class ExperimentResult:
    """Several pipelines on one dataset: its name, the number of ``queries`` (every judged query
    that was searched; each pipeline is evaluated on all of them), the ``pipelines``, the bad
    records ``skipped`` (with ``--skip-bad``) and their ``problems``; ``qrels_missing_docs``:
    how many documents judged for those queries the searched index does not hold (None when no
    index was searched, e.g. only stored runs), with up to five ``qrels_missing_examples``;
    ``sessions``: how many sessions the session measures cover (0: none asked); ``split``: how
    queries were split by similarity to training queries (empty: not split)."""

    dataset: str
    queries: int
    pipelines: list[PipelineResult]
    skipped: int = 0
    problems: list[str] = field(default_factory=list)
    qrels_missing_docs: int | None = None
    qrels_missing_examples: list[str] = field(default_factory=list)
    sessions: int = 0
    split: dict[str, Any] = field(default_factory=dict)

    @property
    def baseline(self) -> PipelineResult | None:
        return next((p for p in self.pipelines if p.is_baseline), None)

    @property
    def metric_names(self) -> list[str]:
        return list(self.pipelines[0].metrics) if self.pipelines else []

    def to_dict(self, per_query: bool = False, problems: bool = False) -> dict[str, Any]:
        """The JSON object: ``dataset``, ``queries``, ``results`` (one per pipeline), ``skipped``,
        ``qrels_missing_docs`` (null when no index was searched) and ``qrels_missing_examples``."""
        tested = self.baseline is not None
        d: dict[str, Any] = {"dataset": self.dataset, "queries": self.queries,
                             "results": [p.to_dict(per_query, tested) for p in self.pipelines],
                             "skipped": self.skipped, "qrels_missing_docs": self.qrels_missing_docs,
                             "qrels_missing_examples": list(self.qrels_missing_examples)}
        if problems:
            d["problems"] = list(self.problems)
        if self.sessions:
            d["sessions"] = self.sessions
        if self.split:
            d["split"] = dict(self.split)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ExperimentResult":
        return cls(d["dataset"], d["queries"], [PipelineResult.from_dict(r) for r in d["results"]],
                   d.get("skipped", 0), list(d.get("problems", [])), d.get("qrels_missing_docs"),
                   list(d.get("qrels_missing_examples", [])), d.get("sessions", 0), dict(d.get("split", {})))
