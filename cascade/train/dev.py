"""The dev check every trainer runs before training and after each epoch: rerank each dev
query's first-stage candidates with the model as it is now and measure nDCG@10 against the dev
judgments (the queries are held out of training, so this tracks generalisation, not fit)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from cascade.core.types import Query
from cascade.evaluation.metrics import evaluate
from cascade.index.index import Index
from cascade.pipeline.parse import parse
from cascade.train.examples import TrainingSet, text_of

DEV_METRIC = "nDCG@10"
Scorer = Callable[[str, Sequence[str]], np.ndarray]  # (query, document texts) -> one score each


@dataclass(frozen=True)
class DevQuery:
    query_id: str
    text: str
    doc_ids: tuple[str, ...]
    doc_texts: tuple[str, ...]


@dataclass(frozen=True)
class DevSet:
    """Dev queries with their first-stage candidates (texts read once) and judgments."""

    queries: tuple[DevQuery, ...]
    data: TrainingSet

    def score(self, scorer: Scorer) -> float:
        """nDCG@10 of the candidates reranked by ``scorer`` (0 with no dev query)."""
        if not self.queries:
            return 0.0
        run = {}
        for q in self.queries:
            scores = np.asarray(scorer(q.text, q.doc_texts), dtype=np.float64)
            run[q.query_id] = {d: float(s) for d, s in zip(q.doc_ids, scores)}
        return float(evaluate(run, dict(self.data.qrels), [DEV_METRIC]).mean[DEV_METRIC])


def dev_set(index: Index, data: TrainingSet, *, pipeline: str, depth: int) -> DevSet:
    """The dev queries' top ``depth`` candidates from ``pipeline`` (the training miner)."""
    queries = [Query(q, t) for q, t in data.queries.items()]
    if not queries:
        return DevSet((), data)
    run = parse(f"({pipeline}) % {depth}", index=index)(queries).to_run()
    out = []
    for q in queries:
        ranked = sorted(run.get(q.id, {}).items(), key=lambda kv: -kv[1])
        ids = [d for d, _ in ranked]
        docs = index.docs_by_id(ids)
        kept = [(d, text_of(doc)) for d, doc in zip(ids, docs) if doc is not None]
        out.append(DevQuery(q.id, q.text, tuple(d for d, _ in kept), tuple(t for _, t in kept)))
    return DevSet(tuple(out), data)
