"""Listwise LLM reranking: the model reads a window of passages and writes their order.

Sun et al., "Is ChatGPT Good at Search? Investigating Large Language Models as Re-Ranking
Agents" (2023, RankGPT); Pradeep et al., RankVicuna/RankZephyr (2023). Windows of ``window``
passages slide from the back of the list toward the top by ``stride``
(:mod:`cascade.llm.window`); each answer is parsed and repaired (:mod:`cascade.llm.parse`),
and the stage counts ``ok``/``repaired``/``failed`` answers in ``parse_counts``.

    cascade eval ../shared/datasets/trec-dl19-passage-pool \\
        -p "run(runs/BM25.top100.trec) % 20 >> llm_listwise(model=llama-cpp:qwen, window=10, stride=5)"

>>> import tempfile, pathlib, cascade
>>> from cascade.llm.testing import EchoBackend
>>> index = cascade.Index.build([cascade.Doc("a", "apple"), cascade.Doc("b", "apple apple car")],
...                             pathlib.Path(tempfile.mkdtemp()) / "i")
>>> stage = LLMListwise(index, backend=EchoBackend(answer=lambda p: "[2] > [1]"))
>>> [h.id for h in cascade.BM25(index).search("apple")]
['b', 'a']
>>> run = (cascade.BM25(index) >> stage).search("apple").to_run()["0"]
>>> sorted(run, key=run.get, reverse=True), dict(stage.parse_counts)
(['a', 'b'], {'ok': 1, 'repaired': 0, 'failed': 0})
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from cascade.core.params import ParamInfo
from cascade.core.registry import Context, register_stage
from cascade.llm.parse import label, parse_ranking
from cascade.llm.prompting import clip, fill
from cascade.llm.stage import COMMON, LLMReranker, order_scores
from cascade.llm.window import slide

WINDOW = (
    ParamInfo("window", int, 20, "passages per prompt", min=2, max=26),
    ParamInfo("stride", int, 10, "places the window moves toward the top each step", min=1),
)
OWN = WINDOW + (ParamInfo("max_tokens", int, 120, "most tokens generated per answer", min=8),)


class LLMListwise(LLMReranker):
    """Rank windows of passages by generation, from the back, parsing with repair."""

    name = "llm_listwise"
    template_name = "listwise"
    letters = False
    own_params = OWN
    params = COMMON + OWN

    def __init__(self, index: Any, model: str | None = None, **params: Any) -> None:
        super().__init__(index, **({"model": model} if model else {}), **params)
        self.window, self.stride = self.values["window"], self.values["stride"]
        self.parse_counts: Counter[str] = Counter({"ok": 0, "repaired": 0, "failed": 0})

    def prompt(self, query: str, passages: list[str]) -> str:
        body = "\n".join(f"[{label(i, self.letters)}] {clip(p, self.max_words)}" for i, p in enumerate(passages))
        return fill(self.template, query=query, passages=body, n=len(passages))

    def rank_window(self, query: str, passages: list[str]) -> list[int]:
        """Positions of ``passages``, best first."""
        gen = self.backend.generate([self.prompt(query, passages)], max_tokens=self.values["max_tokens"])[0]
        order, status = parse_ranking(gen.text, len(passages), letters=self.letters)
        self.parse_counts[status] += 1
        return order

    def rank(self, query: str, passages: list[str]) -> np.ndarray:
        def rank(part: list[int]) -> list[int]:
            order = self.rank_window(query, [passages[i] for i in part])
            return [part[j] for j in order]

        final = slide(list(range(len(passages))), self.window, self.stride, rank)
        return order_scores(final, len(passages))


def _build(ctx: Context, **params: Any) -> LLMListwise:
    return LLMListwise(ctx.index("llm_listwise"), **params)


register_stage("llm_listwise", _build, params=LLMListwise.params, positional=("model",),
               help="rerank with an LLM writing the order of sliding windows of passages (RankGPT)")
