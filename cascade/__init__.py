"""Cascade: multi-stage retrieval — index, retrieve, rerank and evaluate.

>>> import tempfile, cascade
>>> index = cascade.Index.build([cascade.Doc("1", "hello world")], tempfile.mkdtemp() + "/i")
>>> cascade.BM25(index).search("hello")[0].id
'1'
>>> cascade.parse("bm25 % 10", index=index).search("hello").to_run()
{'0': {'1': 0.15141162276268005}}

Names are imported on first use, so ``import cascade`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Doc": "cascade.core.types",
    "Query": "cascade.core.types",
    "Qrels": "cascade.core.types",
    "Run": "cascade.core.types",
    "Hit": "cascade.core.types",
    "ReadReport": "cascade.core.types",
    "Candidates": "cascade.core.candidates",
    "CascadeError": "cascade.core.errors",
    "DataError": "cascade.core.errors",
    "BadIndexError": "cascade.core.errors",
    "Pipeline": "cascade.core.nodes",
    "Stage": "cascade.core.nodes",
    "ParamInfo": "cascade.core.params",
    "register_stage": "cascade.core.registry",
    "Context": "cascade.core.registry",
    "Executor": "cascade.core.executor",
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
    "F": "cascade.filters.expr",
    "Index": "cascade.index.index",
    "TieredMergePolicy": "cascade.index.merge",
    "BM25": "cascade.retrieve.bm25",
    "RM3": "cascade.retrieve.rm3",
    "RunStage": "cascade.retrieve.run",
    "parse": "cascade.pipeline.parse",
    "stage": "cascade.pipeline.function",
    "StageCache": "cascade.pipeline.cache",
    "evaluate": "cascade.evaluation.metrics",
    "Evaluation": "cascade.evaluation.metrics",
    "run_experiment": "cascade.evaluation.experiment",
    "ask": "cascade.rag.ask",
    "Answer": "cascade.rag.answer",
    "Client": "cascade.server.client",
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
    from cascade.core.candidates import Candidates
    from cascade.core.errors import BadIndexError, CascadeError, DataError
    from cascade.core.executor import Executor
    from cascade.core.nodes import Pipeline, Stage
    from cascade.core.params import ParamInfo
    from cascade.core.registry import Context, register_stage
    from cascade.core.types import Doc, Hit, Qrels, Query, ReadReport, Run
    from cascade.data import (
        BeirDataset,
        open_corpus,
        read_folder,
        read_jsonl_docs,
        read_jsonl_queries,
        read_qrels,
        read_trec_run,
        read_trec_topics,
        write_trec_run,
    )
    from cascade.evaluation.experiment import run_experiment
    from cascade.evaluation.metrics import Evaluation, evaluate
    from cascade.filters.expr import F
    from cascade.index.index import Index
    from cascade.index.merge import TieredMergePolicy
    from cascade.pipeline.cache import StageCache
    from cascade.pipeline.function import stage
    from cascade.pipeline.parse import parse
    from cascade.rag.answer import Answer
    from cascade.rag.ask import ask
    from cascade.retrieve.bm25 import BM25
    from cascade.retrieve.rm3 import RM3
    from cascade.retrieve.run import RunStage
    from cascade.server.client import Client
    from cascade.text.analyzer import Analyzer
