"""Pointwise LLM reranking: each (query, passage) pair is one prompt, scored from label log-probabilities.

Two modes. ``mode=yesno`` (relevance generation; Liang et al., "Holistic Evaluation of Language
Models", 2022; Sachan et al./Nogueira et al. style): the score is log P(yes) − log P(no) of the
first answer token, with the capitalised spellings pooled. ``mode=graded`` (fine-grained
relevance labels; Zhuang et al., "Beyond Yes and No", 2023, and ERank, 2025): the model grades
0..``max_grade`` and the score is the expected grade Σ g·P(g) over the grades' first-token
probabilities, normalised over the grades. All pairs of a query go to the backend in one
batch; with llama-cpp the shared prompt prefix (instruction and query) is evaluated once.

    cascade eval ../shared/datasets/trec-dl19-passage-pool \\
        -p "run(runs/BM25.top100.trec) % 20 >> llm_pointwise(model=llama-cpp:qwen, mode=graded)"

>>> import tempfile, pathlib, cascade
>>> from cascade.llm.testing import EchoBackend
>>> index = cascade.Index.build([cascade.Doc("a", "apple pie"), cascade.Doc("b", "car")],
...                             pathlib.Path(tempfile.mkdtemp()) / "i")
>>> fake = EchoBackend(scorer=lambda p, labels: {l: (-0.1 if (l.lower() == "yes") == ("apple" in p) else -3.0)
...                                             for l in labels})
>>> run = (cascade.BM25(index) >> LLMPointwise(index, backend=fake)).search("apple car").to_run()["0"]
>>> sorted(run, key=run.get, reverse=True)
['a', 'b']
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cascade.core.params import ParamInfo
from cascade.core.registry import Context, register_stage
from cascade.llm.prompting import clip, fill
from cascade.llm.stage import COMMON, LLMReranker

YES, NO = ("yes", "Yes", "YES"), ("no", "No", "NO")
OWN = (
    ParamInfo("mode", str, "yesno", "yesno: log P(yes) - log P(no); graded: expected grade", choices=("yesno", "graded")),
    ParamInfo("max_grade", int, 3, "graded mode: grades 0..max_grade (3 as UMBRELA; up to 10 as ERank)", min=1,
              max=10),
)


def logsumexp(values: list[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    top = arr.max()
    return float(top) if not np.isfinite(top) else float(top + np.log(np.exp(arr - top).sum()))


def yes_no_score(lp: dict[str, float]) -> float:
    """log P(yes) − log P(no), each pooled over its spellings."""
    return logsumexp([lp[w] for w in YES]) - logsumexp([lp[w] for w in NO])


def expected_grade(lp: dict[str, float], grades: list[str]) -> float:
    """Σ g·P(g) with P normalised over the grades (labels that cannot be produced count 0)."""
    logs = np.array([lp[g] for g in grades], dtype=np.float64)
    if not np.isfinite(logs).any():
        return 0.0
    p = np.exp(logs - logs.max())
    p /= p.sum()
    return float((p * np.arange(len(grades))).sum())


class LLMPointwise(LLMReranker):
    """Score every candidate with its own prompt; yes/no or graded label log-probabilities."""

    name = "llm_pointwise"
    own_params = OWN
    params = COMMON + OWN

    def __init__(self, index: Any, model: str | None = None, **params: Any) -> None:
        mode = params.get("mode", "yesno")
        self.template_name = "pointwise_graded" if mode == "graded" else "pointwise_yesno"
        super().__init__(index, **({"model": model} if model else {}), **params)
        self.mode, self.max_grade = self.values["mode"], self.values["max_grade"]

    def prompts(self, query: str, passages: list[str]) -> list[str]:
        return [fill(self.template, query=query, passage=clip(p, self.max_words), max_grade=self.max_grade)
                for p in passages]

    def rank(self, query: str, passages: list[str]) -> np.ndarray:
        prompts = self.prompts(query, passages)
        if self.mode == "yesno":
            lps = self.backend.label_logprobs(prompts, list(YES + NO))
            return np.array([yes_no_score(lp) for lp in lps], dtype=np.float32)
        grades = [str(g) for g in range(self.max_grade + 1)]
        lps = self.backend.label_logprobs(prompts, grades)
        return np.array([expected_grade(lp, grades) for lp in lps], dtype=np.float32)


def _build(ctx: Context, **params: Any) -> LLMPointwise:
    return LLMPointwise(ctx.index("llm_pointwise"), **params)


register_stage("llm_pointwise", _build, params=LLMPointwise.params, positional=("model",),
               help="rerank with an LLM, one prompt per candidate: yes/no or graded label log-probabilities")
