"""Evaluation: metrics, per query and mean."""

from cascade.evaluation.metrics import DEFAULT_METRICS, Evaluation, evaluate, parse_metrics

__all__ = ["DEFAULT_METRICS", "Evaluation", "evaluate", "parse_metrics"]
