"""A fixed token budget: keep the best-ranked passages whose texts fit in ``tokens`` tokens.

The baseline every adaptive context selection is measured against ("Re-ranking the Context for
Multimodal Retrieval Augmented Generation", Mortaheb et al., 2025, compare their adaptive
choice with a fixed number of entries; a budget in tokens is the fixed choice an application
with a context window makes). Passages are taken in rank order; the first that does not fit
ends the context (``fill=true``: it is skipped and smaller, lower-ranked passages may still
fit). The first ``min_k`` passages (default 1) are kept even past the budget, so one long top
passage does not leave the generator without context. Tokens are counted as words and
punctuation marks (:func:`~cascade.context.base.count_tokens`).

>>> budget_cut([40, 30, 50, 10], budget=80)
([0, 1], {2: 'over the budget: needs 50 tokens, 10 left of 80', 3: 'after the budget was reached at rank 3'})
>>> budget_cut([40, 30, 50, 10], budget=80, fill=True)[0]
[0, 1, 3]
>>> budget_cut([90, 30], budget=80, min_k=1)
([0], {1: 'over the budget: needs 30 tokens, 0 left of 80'})

In a pipeline: ``cascade.parse("bm25 % 50 >> budget(tokens=1500)", index=idx)``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from cascade.context.base import Choice, Selector, Texts, count_tokens
from cascade.core.nodes import Pipeline
from cascade.core.params import ParamInfo
from cascade.core.registry import Context, register_stage
from cascade.core.types import Query

PARAMS = (
    ParamInfo("tokens", int, 1000, "context budget in tokens (words and punctuation marks)", min=1),
    ParamInfo("fill", bool, False, "skip a passage that does not fit and try the next ones (default: stop there)"),
    ParamInfo("min_k", int, 1, "keep at least this many top passages even past the budget (a context is never "
              "empty because one passage is long)", min=0),
)


def budget_cut(lengths: Sequence[int], budget: int, fill: bool = False,
               min_k: int = 0) -> tuple[list[int], dict[int, str]]:
    """Positions (rank order) of the passages kept within ``budget`` tokens, and why each other
    position was cut. ``lengths`` are the passages' token counts, best ranked first (a lazy
    sequence is read only as far as needed: without ``fill`` the rest after the stop are cut
    unread); the first ``min_k`` are kept whatever their length (and count against the budget)."""
    kept: list[int] = []
    cut: dict[int, str] = {}
    used, stopped_at = 0, None
    for pos in range(len(lengths)):
        if stopped_at is not None:
            cut[pos] = f"after the budget was reached at rank {stopped_at + 1}"
            continue
        n = lengths[pos]
        if used + n <= budget or pos < min_k:
            kept.append(pos)
            used += n
        else:
            cut[pos] = f"over the budget: needs {n} tokens, {max(budget - used, 0)} left of {budget}"
            if not fill:
                stopped_at = pos
    return kept, cut


class Lengths:
    """Token counts of one query's candidate texts, each counted when first read."""

    def __init__(self, texts: Texts) -> None:
        self.texts = texts
        self.counted: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, pos: int) -> int:
        if pos not in self.counted:
            self.counted[pos] = count_tokens(self.texts[pos])
        return self.counted[pos]


class TokenBudget(Selector):
    """Keep passages in rank order while their texts fit in ``tokens`` tokens."""

    name = "budget"
    params = PARAMS

    def choose(self, query: Query, nums: np.ndarray, scores: np.ndarray, texts: Texts) -> Choice:
        budget = self.values["tokens"]
        lengths = Lengths(texts)
        kept, cut = budget_cut(lengths, budget, self.values["fill"], self.values["min_k"])
        return Choice(kept, cut, {"tokens": sum(lengths[p] for p in kept), "budget": budget})


def _build(ctx: Context, **params: Any) -> Pipeline:
    return TokenBudget(ctx.index("budget"), **params)


register_stage("budget", _build, params=PARAMS, help="keep the top passages that fit in a budget of tokens")
