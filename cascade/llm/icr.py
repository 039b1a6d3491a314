"""ICR: in-context reranking from the attention a query pays to each passage in one prompt.

Chen et al., "Attention in Large Language Models Yields Efficient Zero-Shot Re-Rankers" (2024).
The passages of a window come first, then an instruction and the query, so every scoring
token (the instruction, the query and the chat template's closing tokens) can attend to every
passage. A passage token's attention is averaged over the scoring tokens and summed over heads
and layers. Calibration (the paper's default): the same prompt with the content-free query
``N/A`` gives each passage token its bias; a passage's score is the sum over its tokens of
(query attention - N/A attention), leaving out tokens whose difference falls below the
passage's mean minus two standard deviations. The passages' keys and values are computed once
and kept for the ``N/A`` prompt, so a window costs one forward pass over the passages plus two
short ones over the scoring tokens, and no decoding. It needs the model's attention, so the
transformers backend (:class:`cascade.llm.hf.TransformersBackend`). Sliding windows as in
:mod:`cascade.llm.listwise`.

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
    """(prompt, character span of each passage, scoring span) for ``template`` with
    ``{passages}`` before ``{query}``: the scoring span runs from the first non-blank character
    after the passages (an instruction, when the template has one) to the end of the prompt.

    >>> text, spans, q = layout("{passages}\\nQ: {query}", "cat", ["a b", "c"])
    >>> [text[s:e] for s, e in spans], text[q[0]:q[1]]
    (['a b', 'c'], 'Q: cat')
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
    text = head + body + middle + query + tail
    after = len(head) + len(body)
    blank = len(middle) - len(middle.lstrip()) if middle.strip() else len(middle)
    return text, spans, (after + blank, len(text))


def calibrated(attention: np.ndarray, bias: np.ndarray) -> float:
    """A passage's score from its tokens' attention under the query and under ``N/A``: the sum of
    the differences, leaving out tokens whose difference is below the mean minus two standard
    deviations (the paper's masked calibration; with one token nothing is left out).

    >>> calibrated(np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, -9.0]), np.zeros(7))
    6.0
    """
    diff = attention - bias
    if len(diff) < 2:
        return float(diff.sum())
    keep = diff > diff.mean() - 2 * diff.std(ddof=1)
    return float(diff[keep].sum())


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
        attention = self._attention(query, clipped)
        if not self.values["calibrate"]:
            return np.array([t.sum() for t in attention])
        bias = self._attention(CALIBRATION, clipped)
        return np.array([calibrated(t, b) for t, b in zip(attention, bias)])

    def rank(self, query: str, passages: list[str]) -> np.ndarray:
        def rank(part: list[int]) -> list[int]:
            scores = self.window_scores(query, [passages[i] for i in part])
            return [part[j] for j in np.argsort(-scores, kind="stable")]

        return order_scores(slide(list(range(len(passages))), self.window, self.stride, rank), len(passages))


def _build(ctx: Context, **params: Any) -> ICR:
    return ICR(ctx.index("icr"), **params)


register_stage("icr", _build, params=ICR.params, positional=("model",),
               help="rerank by the attention the query pays to each passage, calibrated by N/A (ICR)")
