"""FIRST: a listwise ranking read from the logits of the first generated token.

Reddy et al., "FIRST: Faster Improved Listwise Reranking with Single Token Decoding" (2024). The
listwise prompt labels passages ``A``, ``B``, ``C``...; instead of generating the whole order,
the log-probability of each label as the first answer token ranks the window. One forward
pass per window, no decoding. Sliding windows as in :mod:`cascade.llm.listwise` (at most 26
passages per window: one letter each).

    cascade eval ../shared/datasets/trec-dl19-passage-pool \\
        -p "run(runs/BM25.top100.trec) % 20 >> first(model=llama-cpp:qwen, window=20)"

>>> import tempfile, pathlib, cascade
>>> from cascade.llm.testing import EchoBackend
>>> index = cascade.Index.build([cascade.Doc("a", "apple"), cascade.Doc("b", "apple apple car")],
...                             pathlib.Path(tempfile.mkdtemp()) / "i")
>>> fake = EchoBackend(scorer=lambda p, labels: {l: (-0.5 if ("[" + l + "] apple apple") in p else -2.0)
...                                             for l in labels})
>>> run = (cascade.BM25(index) >> First(index, backend=fake)).search("apple").to_run()["0"]
>>> max(run, key=run.get)
'b'
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cascade.core.registry import Context, register_stage
from cascade.llm.listwise import WINDOW
from cascade.llm.parse import label
from cascade.llm.prompting import clip, fill
from cascade.llm.stage import COMMON, LLMReranker, order_scores
from cascade.llm.window import slide


class First(LLMReranker):
    """Rank windows by the first-token log-probabilities of their passage letters."""

    name = "first"
    template_name = "first"
    own_params = WINDOW
    params = COMMON + WINDOW

    def __init__(self, index: Any, model: str | None = None, **params: Any) -> None:
        super().__init__(index, **({"model": model} if model else {}), **params)
        self.window, self.stride = self.values["window"], self.values["stride"]

    def prompt(self, query: str, passages: list[str]) -> str:
        body = "\n".join(f"[{label(i, True)}] {clip(p, self.max_words)}" for i, p in enumerate(passages))
        return fill(self.template, query=query, passages=body, n=len(passages))

    def rank_window(self, query: str, passages: list[str]) -> list[int]:
        """Positions of ``passages``, best first (ties keep the incoming order)."""
        labels = [label(i, True) for i in range(len(passages))]
        lp = self.backend.label_logprobs([self.prompt(query, passages)], labels)[0]
        scores = np.array([lp[x] for x in labels], dtype=np.float64)
        return [int(i) for i in np.argsort(-scores, kind="stable")]

    def rank(self, query: str, passages: list[str]) -> np.ndarray:
        def rank(part: list[int]) -> list[int]:
            return [part[j] for j in self.rank_window(query, [passages[i] for i in part])]

        return order_scores(slide(list(range(len(passages))), self.window, self.stride, rank), len(passages))


def _build(ctx: Context, **params: Any) -> First:
    return First(ctx.index("first"), **params)


register_stage("first", _build, params=First.params, positional=("model",),
               help="rerank windows by the first generated token's log-probabilities over passage letters (FIRST)")
