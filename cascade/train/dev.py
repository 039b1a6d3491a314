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
from cascade.index.segment import doc_text
from cascade.pipeline.parse import parse
from cascade.train.examples import TrainingSet

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
    ranked = {q.id: [d for d, _ in sorted(run.get(q.id, {}).items(), key=lambda kv: -kv[1])] for q in queries}
    wanted = sorted({d for ids in ranked.values() for d in ids})
    texts = {d: doc_text(doc, index.fields) for d, doc in zip(wanted, index.docs_by_id(wanted)) if doc is not None}
    out = []
    for q in queries:
        kept = [d for d in ranked[q.id] if d in texts]
        out.append(DevQuery(q.id, q.text, tuple(kept), tuple(texts[d] for d in kept)))
    return DevSet(tuple(out), data)
