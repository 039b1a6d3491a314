"""What the LLM rerankers share: the backend (opened once per spec, behind the call cache),
passage texts, per-query timing, and the call/token accounting each stage reports.

A subclass implements :meth:`LLMReranker.rank`: scores for one query's passages (higher is
better). The stage's output carries ``usage`` (calls, cached calls, prompt and completion
tokens, seconds of model time) for the experiment table and JSON.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from cascade.core.candidates import Candidates, cut
from cascade.core.errors import CascadeError
from cascade.core.nodes import Runner, format_call
from cascade.core.params import ParamInfo, check_params, non_defaults
from cascade.core.types import Doc, Query
from cascade.index.index import Index
from cascade.llm.backend import Backend, Usage, open_backend
from cascade.llm.prompting import digest, template
from cascade.rerank.base import Reranker, Scored

DEFAULT_MODEL = "llama-cpp:qwen"
COMMON = (
    ParamInfo("model", str, DEFAULT_MODEL, "LLM: llama-cpp:PATH.gguf|qwen|smollm2, openai:URL#model, "
              "transformers:DIR"),
    ParamInfo("prompt", str, None, "a prompt template file used instead of the shipped one", optional=True),
    ParamInfo("max_words", int, 80, "words of each passage shown to the model", min=4),
    ParamInfo("k", int, None, "rerank only each query's top k incoming candidates (default: all)", min=1,
              optional=True),
)

_OPEN: dict[str, Backend] = {}  # one loaded model per spec, shared by every stage of a process


def shared_backend(spec: str) -> Backend:
    """The backend ``spec`` names, opened (with the call cache) on first use and then shared."""
    if spec not in _OPEN:
        _OPEN[spec] = open_backend(spec)
    return _OPEN[spec]


def usage_of(backend: Backend) -> Usage:
    return Usage(**backend.usage.as_dict())  # type: ignore[arg-type]


def usage_since(backend: Backend, before: Usage) -> dict[str, float]:
    now = backend.usage.as_dict()
    return {k: round(float(now[k]) - float(getattr(before, k)), 4) for k in now}


class LLMReranker(Reranker):
    """Base of the LLM stages; ``params`` = :data:`COMMON` + the stage's own."""

    template_name = ""
    own_params: tuple[ParamInfo, ...] = ()
    params: tuple[ParamInfo, ...] = COMMON

    def __init__(self, index: Index, model: str = DEFAULT_MODEL, *, backend: Backend | None = None,
                 **params: Any) -> None:
        values = check_params(self.name, self.params, {"model": model, **params})
        super().__init__(index)
        self.values = values
        self.spec, self.top, self.max_words = values["model"], values["k"], values["max_words"]
        self.template = template(self.template_name, values["prompt"])
        self._backend = backend

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = shared_backend(self.spec)
        return self._backend

    def prepare(self) -> None:
        self.backend  # noqa: B018  (load the model before the clock starts)

    def settings(self) -> dict[str, Any]:
        return non_defaults(self.params, self.values)

    def key(self) -> tuple[Any, ...]:
        own = tuple(sorted((k, v) for k, v in self.values.items() if k != "prompt"))
        return (self.name, own, digest(self.template), self.k, self.index.version)

    @property
    def input_depth(self) -> int | None:  # type: ignore[override]
        return self.top

    def __str__(self) -> str:
        return format_call(self.name, (), self.settings())

    # -- running -----------------------------------------------------------------------------

    def execute(self, runner: Runner, queries: Sequence[Query], candidates: Candidates | None) -> Candidates:
        if candidates is not None and self.top is not None:
            candidates = cut(candidates, self.top)
        before = usage_of(self.backend)
        out = super().execute(runner, queries, candidates)
        out.usage = usage_since(self.backend, before)
        return out

    def score_timed(self, queries: Sequence[Query], docs: list[np.ndarray], k: int) -> tuple[Scored, np.ndarray]:
        results, seconds = [], np.zeros(len(queries))
        for i, (query, nums) in enumerate(zip(queries, docs)):
            start = time.perf_counter()
            passages = [_text(d) for d in self.index.docs(nums)] if len(nums) else []
            scores = self.rank(query.text, passages) if passages else np.empty(0, np.float32)
            results.append((np.arange(len(nums)), np.asarray(scores, dtype=np.float32)))
            seconds[i] = time.perf_counter() - start
        return results, seconds

    def rank(self, query: str, passages: list[str]) -> np.ndarray:
        """Scores of ``passages`` (in the order given, best ranked first) for ``query``."""
        raise NotImplementedError


def order_scores(order: Sequence[int], n: int) -> np.ndarray:
    """Scores that sort positions as ``order`` does (first gets n, last 1)."""
    scores = np.zeros(n, dtype=np.float32)
    for rank, pos in enumerate(order):
        scores[pos] = n - rank
    return scores


def need(value: Any, what: str) -> Any:
    if value is None:
        raise CascadeError(what)
    return value


def _text(doc: Doc) -> str:
    return " ".join(part for part in (doc.title, doc.text) if part)
