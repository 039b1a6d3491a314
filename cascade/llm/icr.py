"""ICR: in-context reranking from the attention a query pays to each passage in one prompt.

Chen et al., "Attention in Large Language Models Yields Efficient Zero-Shot Re-Rankers" (2024).
The passages of a window come first and the query last, so every query token can attend to
every passage; a passage's score is the attention its tokens receive from the query's tokens,
summed over layers and heads, minus the same quantity for a content-free query ``N/A``
(calibration against the model's positional and length biases). Two forward passes per
window, no decoding; it needs the model's attention, so the transformers backend
(:class:`cascade.llm.hf.TransformersBackend`). Sliding windows as in :mod:`cascade.llm.listwise`.

    cascade eval ../shared/datasets/trec-dl19-passage-pool \\
        -p "run(runs/BM25.top100.trec) % 20 >> icr(model=transformers:/path/to/instruct-model)"
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cascade.core.errors import CascadeError
from cascade.core.params import ParamInfo
from cascade.core.registry import Context, register_stage
from cascade.llm.listwise import WINDOW
from cascade.llm.prompting import clip
from cascade.llm.stage import COMMON, LLMReranker, order_scores
from cascade.llm.window import slide

CALIBRATION = "N/A"
OWN = WINDOW + (ParamInfo("calibrate", bool, True, "subtract the attention of the content-free query N/A"),)


def layout(template: str, query: str, passages: list[str]) -> tuple[str, list[tuple[int, int]], tuple[int, int]]:
    """(prompt, character span of each passage, span of the query) for ``template`` with
    ``{passages}`` before ``{query}``.

    >>> text, spans, q = layout("{passages}\\nQ: {query}", "cat", ["a b", "c"])
    >>> [text[s:e] for s, e in spans], text[q[0]:q[1]]
    (['a b', 'c'], 'cat')
    """
    if template.find("{passages}") < 0 or template.find("{query}") < template.find("{passages}"):
        raise CascadeError("an icr prompt template must have {passages} and then {query} (the query last)")
    head, rest = template.split("{passages}", 1)
    middle, tail = rest.split("{query}", 1)
    spans, body = [], ""
    for i, p in enumerate(passages):
        marker = f"[{i + 1}] "
        start = len(head) + len(body) + len(marker)
        body += marker + p + ("\n" if i < len(passages) - 1 else "")
        spans.append((start, start + len(p)))
    q_start = len(head) + len(body) + len(middle)
    return head + body + middle + query + tail, spans, (q_start, q_start + len(query))


class ICR(LLMReranker):
    """Rank windows by calibrated query-to-passage attention (transformers backend)."""

    name = "icr"
    template_name = "icr"
    own_params = OWN
    params = COMMON + OWN

    def __init__(self, index: Any, model: str | None = None, **params: Any) -> None:
        super().__init__(index, **({"model": model} if model else {}), **params)
        self.window, self.stride = self.values["window"], self.values["stride"]

    def _attention(self, query: str, passages: list[str]) -> np.ndarray:
        if not hasattr(getattr(self.backend, "inner", self.backend), "attention_counted"):
            raise CascadeError(f"icr reads attention weights: use a transformers backend "
                               f"(model=transformers:DIR), not {self.spec}")
        prompt, spans, q = layout(self.template, query, passages)
        return self.backend.attention(prompt, spans, q)

    def window_scores(self, query: str, passages: list[str]) -> np.ndarray:
        clipped = [clip(p, self.max_words) for p in passages]
        scores = self._attention(query, clipped)
        if self.values["calibrate"]:
            scores = scores - self._attention(CALIBRATION, clipped)
        return scores

    def rank(self, query: str, passages: list[str]) -> np.ndarray:
        def rank(part: list[int]) -> list[int]:
            scores = self.window_scores(query, [passages[i] for i in part])
            return [part[j] for j in np.argsort(-scores, kind="stable")]

        return order_scores(slide(list(range(len(passages))), self.window, self.stride, rank), len(passages))


def _build(ctx: Context, **params: Any) -> ICR:
    return ICR(ctx.index("icr"), **params)


register_stage("icr", _build, params=ICR.params, positional=("model",),
               help="rerank by the attention the query pays to each passage, calibrated by N/A (ICR)")
