"""A stored TREC run as a first stage: rerank fixed candidate lists, or fuse runs.

>>> import tempfile, pathlib
>>> from cascade.retrieve.run import RunStage
>>> path = pathlib.Path(tempfile.mkdtemp()) / "r.trec"
>>> _ = path.write_text("q1 Q0 d1 1 2.5 x\\nq1 Q0 d2 2 1.5 x\\n")
>>> from cascade.core.types import Query
>>> RunStage(path).search([Query("q1", "")]).to_run()
{'q1': {'d1': 2.5, 'd2': 1.5}}
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cascade.core.candidates import Candidates, IdTable
from cascade.core.errors import CascadeError, DataError
from cascade.core.nodes import Pipeline, Runner, format_call, format_value
from cascade.core.params import ParamInfo
from cascade.core.registry import Context, register_stage
from cascade.core.types import Query, Run
from cascade.data.trec import read_trec_run
from cascade.index.fsutil import file_digest

PARAMS = (
    ParamInfo("path", str, None, "the TREC run file (may be relative to the dataset directory)"),
    ParamInfo("k", int, 1000, "candidates read per query", min=1),
)


class RunStage(Pipeline):
    """Candidates read from a TREC run file; queries the file lacks get no candidates."""

    name = "run"
    params = PARAMS
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

    def limit(self, k: int) -> "RunStage":
        return RunStage(self.path, min(k, self.k), self.label)

    def prepare(self) -> None:
        """Read the run file now."""
        self.run  # noqa: B018

    @cached_property
    def run(self) -> Run:
        return read_trec_run(self.path)

    @cached_property
    def space(self) -> IdTable:
        return IdTable()

    def execute(self, runner: Runner, queries: Sequence[Query], candidates: Candidates | None) -> Candidates:
        docs, scores = [], []
        for q in queries:
            ranked = sorted(self.run.get(q.id, {}).items(), key=lambda item: (-item[1], item[0]))[: self.k]
            docs.append(self.space.add([d for d, _ in ranked]))
            scores.append(np.array([s for _, s in ranked], dtype=np.float32))
        return Candidates.from_lists([q.id for q in queries], docs, scores, self.space)

    def __str__(self) -> str:
        return format_call("run", [format_value(self.label)], {"k": self.k} if self.k != 1000 else {})


def _build(ctx: Context, path: str | None, k: int) -> Pipeline:
    if path is None or path == "":
        raise CascadeError("run needs the path of a TREC run file: run(runs/file.trec)")
    return RunStage(ctx.path(str(path)), k=k, label=str(path))


register_stage("run", _build, params=PARAMS, positional=("path",), help="a stored TREC run's candidates")
