"""Batched self-consistency: several passages graded in one prompt, several shuffled orders, grades averaged.

Korikov et al., "Batched Self-Consistency Improves LLM Relevance Assessment and Ranking" (2025).
A query's candidates are shuffled, cut into prompts of ``batch`` passages, and the model writes
a grade 0..``max_grade`` for each (``[2] 1`` per line); this is done ``samples`` times with a
different shuffle (and seed), so each passage is graded in several contexts, and its score is
the mean of the grades it got. A grade that cannot be read out of an answer is left out of the
mean (a passage with none scores 0); ``parse_counts`` counts answers read fully, partly or not.

    cascade eval ../shared/datasets/trec-dl19-passage-pool \\
        -p "run(runs/BM25.top100.trec) % 20 >> llm_bsc(model=llama-cpp:qwen, batch=10, samples=3)"

>>> import tempfile, pathlib, cascade
>>> from cascade.llm.testing import EchoBackend
>>> def grader(prompt):  # grade 3 for passages mentioning car, 0 otherwise
...     body = prompt.split("\\n\\n")[1].splitlines()
...     return "\\n".join(line.split("]")[0] + "] " + ("3" if "car" in line else "0") for line in body)
>>> index = cascade.Index.build([cascade.Doc("a", "apple"), cascade.Doc("b", "apple car")],
...                             pathlib.Path(tempfile.mkdtemp()) / "i")
>>> stage = LLMBatchedSelfConsistency(index, backend=EchoBackend(answer=grader), samples=2)
>>> stage.rank("apple", ["apple", "apple car"]).tolist(), dict(stage.parse_counts)
([0.0, 3.0], {'ok': 2, 'repaired': 0, 'failed': 0})
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Any

import numpy as np

from cascade.core.params import ParamInfo
from cascade.core.registry import Context, register_stage
from cascade.llm.prompting import clip, fill
from cascade.llm.stage import COMMON, LLMReranker

OWN = (
    ParamInfo("batch", int, 10, "passages per prompt", min=1, max=50),
    ParamInfo("samples", int, 3, "shuffled orders (each passage is graded this many times)", min=1, max=20),
    ParamInfo("max_grade", int, 3, "grades 0..max_grade", min=1, max=10),
    ParamInfo("temperature", float, 0.0, "sampling temperature of each answer", min=0.0),
    ParamInfo("seed", int, 0, "seed of the shuffles (and of sampling)"),
)
LINE = re.compile(r"\[?\s*(\d+)\s*\]?\s*[:\-=]?\s*(\d+)")


def parse_grades(text: str, n: int, max_grade: int) -> dict[int, int]:
    """{0-based position: grade} read from lines like ``[2] 1`` (``2: 1``, full-width digits...)."""
    text = unicodedata.normalize("NFKC", text)
    out: dict[int, int] = {}
    for line in text.splitlines():
        m = LINE.search(line)
        if m:
            pos, grade = int(m.group(1)) - 1, int(m.group(2))
            if 0 <= pos < n and 0 <= grade <= max_grade and pos not in out:
                out[pos] = grade
    return out


class LLMBatchedSelfConsistency(LLMReranker):
    """Grade passages in shuffled batches, several times; the mean grade is the score."""

    name = "llm_bsc"
    template_name = "bsc"
    own_params = OWN
    params = COMMON + OWN

    def __init__(self, index: Any, model: str | None = None, **params: Any) -> None:
        super().__init__(index, **({"model": model} if model else {}), **params)
        v = self.values
        self.batch, self.samples, self.max_grade = v["batch"], v["samples"], v["max_grade"]
        self.parse_counts: Counter[str] = Counter({"ok": 0, "repaired": 0, "failed": 0})

    def prompt(self, query: str, passages: list[str]) -> str:
        body = "\n".join(f"[{i + 1}] {clip(p, self.max_words)}" for i, p in enumerate(passages))
        return fill(self.template, query=query, passages=body, n=len(passages), max_grade=self.max_grade)

    def _groups(self, n: int) -> list[tuple[int, list[int]]]:
        """(sample, positions) of every prompt: each sample a new shuffle cut into batches."""
        rng = np.random.default_rng(self.values["seed"])
        out = []
        for s in range(self.samples):
            order = rng.permutation(n).tolist() if s else list(range(n))
            out += [(s, order[i:i + self.batch]) for i in range(0, n, self.batch)]
        return out

    def rank(self, query: str, passages: list[str]) -> np.ndarray:
        groups = self._groups(len(passages))
        total, count = np.zeros(len(passages)), np.zeros(len(passages))
        for s, group in groups:
            gen = self.backend.generate([self.prompt(query, [passages[i] for i in group])],
                                        max_tokens=8 * len(group) + 8, temperature=self.values["temperature"],
                                        seed=self.values["seed"] + s)[0]
            grades = parse_grades(gen.text, len(group), self.max_grade)
            self.parse_counts["ok" if len(grades) == len(group) else "repaired" if grades else "failed"] += 1
            for j, g in grades.items():
                total[group[j]] += g
                count[group[j]] += 1
        return np.where(count > 0, total / np.maximum(count, 1), 0.0).astype(np.float32)


def _build(ctx: Context, **params: Any) -> LLMBatchedSelfConsistency:
    return LLMBatchedSelfConsistency(ctx.index("llm_bsc"), **params)


register_stage("llm_bsc", _build, params=LLMBatchedSelfConsistency.params, positional=("model",),
               help="rerank by grades of passages in batched prompts over shuffled orders (batched self-consistency)")
