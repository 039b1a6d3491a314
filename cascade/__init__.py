"""Cascade: multi-stage retrieval — index, retrieve, rerank and evaluate.

>>> import tempfile, cascade
>>> index = cascade.Index.build([cascade.Doc("1", "hello world")], tempfile.mkdtemp() + "/i")
>>> index.bm25().search("hello")[0].id
'1'

Names are imported on first use, so ``import cascade`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Doc": "cascade.data.types",
    "Query": "cascade.data.types",
    "Qrels": "cascade.data.types",
    "Run": "cascade.data.types",
    "ReadReport": "cascade.data.types",
    "BeirDataset": "cascade.data.beir",
    "open_corpus": "cascade.data",
    "read_jsonl_docs": "cascade.data",
    "read_jsonl_queries": "cascade.data",
    "read_qrels": "cascade.data",
    "read_trec_run": "cascade.data",
    "write_trec_run": "cascade.data",
    "read_trec_topics": "cascade.data",
    "read_folder": "cascade.data",
    "Analyzer": "cascade.text.analyzer",
    "Index": "cascade.index.index",
    "F": "cascade.filters.expr",
    "TieredMergePolicy": "cascade.index.merge",
    "BM25": "cascade.retrieve.bm25",
    "Hit": "cascade.retrieve.bm25",
    "Candidates": "cascade.pipeline.candidates",
    "Stage": "cascade.pipeline.stage",
    "Pipeline": "cascade.pipeline.base",
    "parse": "cascade.pipeline.parse",
    "stage": "cascade.pipeline.function",
    "register_stage": "cascade.pipeline.registry",
    "Context": "cascade.pipeline.registry",
    "Executor": "cascade.pipeline.executor",
    "StageCache": "cascade.pipeline.cache",
    "RunStage": "cascade.retrieve.run",
    "RM3": "cascade.retrieve.rm3",
    "evaluate": "cascade.evaluation.metrics",
    "Evaluation": "cascade.evaluation.metrics",
    "CascadeError": "cascade.errors",
    "DataError": "cascade.errors",
    "BadIndexError": "cascade.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cascade' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from cascade.data import (BeirDataset, open_corpus, read_folder, read_jsonl_docs, read_jsonl_queries,
                              read_qrels, read_trec_run, read_trec_topics, write_trec_run)
    from cascade.data.types import Doc, Qrels, Query, ReadReport, Run
    from cascade.errors import BadIndexError, CascadeError, DataError
    from cascade.evaluation.metrics import Evaluation, evaluate
    from cascade.filters.expr import F
    from cascade.index.index import Index
    from cascade.index.merge import TieredMergePolicy
    from cascade.pipeline.candidates import Candidates
    from cascade.pipeline.base import Pipeline
    from cascade.pipeline.cache import StageCache
    from cascade.pipeline.executor import Executor
    from cascade.pipeline.function import stage
    from cascade.pipeline.parse import parse
    from cascade.pipeline.registry import Context, register_stage
    from cascade.pipeline.stage import Stage
    from cascade.retrieve.rm3 import RM3
    from cascade.retrieve.run import RunStage
    from cascade.retrieve.bm25 import BM25, Hit
    from cascade.text.analyzer import Analyzer
