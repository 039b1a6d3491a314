"""A stored TREC run as a first stage: rerank fixed candidate lists, or fuse runs.

>>> import tempfile, pathlib
>>> from cascade.retrieve.run import RunStage
>>> path = pathlib.Path(tempfile.mkdtemp()) / "r.trec"
>>> _ = path.write_text("q1 Q0 d1 1 2.5 x\\nq1 Q0 d2 2 1.5 x\\n")
>>> from cascade.data.types import Query
>>> RunStage(path).search([Query("q1", "")]).to_run()
{'q1': {'d1': 2.5, 'd2': 1.5}}
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cascade.data.trec import read_trec_run
from cascade.data.types import Query, Run
from cascade.errors import DataError
from cascade.index.fsutil import file_digest
from cascade.pipeline.base import Pipeline, format_call
from cascade.pipeline.candidates import Candidates, IdTable


class RunStage(Pipeline):
    """Candidates read from a TREC run file; queries the file lacks get no candidates."""

    cacheable = False  # reading the file is as cheap as reading a cache entry

    def __init__(self, path: str | Path, k: int = 1000, label: str | None = None) -> None:
        self.path = Path(path)
        self.k = int(k)
        self.label = label if label is not None else str(path)  # as the user wrote it
        if not self.path.is_file():
            raise DataError(path, "no such run file")
        self.digest = file_digest(self.path)

    def key(self) -> tuple[Any, ...]:
        return ("run", self.digest, self.k)

    @property
    def depth(self) -> int:  # type: ignore[override]
        return self.k

    def with_depth(self, k: int) -> "RunStage":
        return RunStage(self.path, k, self.label)

    @cached_property
    def run(self) -> Run:
        return read_trec_run(self.path)

    @cached_property
    def space(self) -> IdTable:
        return IdTable()

    def execute(self, executor: Any, queries: Sequence[Query], candidates: Candidates | None) -> Candidates:
        docs, scores = [], []
        for q in queries:
            ranked = sorted(self.run.get(q.id, {}).items(), key=lambda item: (-item[1], item[0]))[: self.k]
            docs.append(self.space.add([d for d, _ in ranked]))
            scores.append(np.array([s for _, s in ranked], dtype=np.float32))
        return Candidates.from_lists([q.id for q in queries], docs, scores, self.space)

    def __str__(self) -> str:
        return format_call("run", [_path_arg(self.label)], {"k": self.k} if self.k != 1000 else {})


def _path_arg(label: str) -> str:
    from cascade.pipeline.base import format_value

    return format_value(label)
