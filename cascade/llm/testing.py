"""A backend with no model, for tests and docstring examples: answers come from functions.

>>> b = EchoBackend(answer=lambda p: p.upper())
>>> b.generate(["abc"], max_tokens=3)[0].text
'ABC'
>>> b.label_logprobs(["x"], ["yes", "no"])[0]["yes"] < 0
True
"""

from __future__ import annotations

import math
from typing import Callable

from cascade.llm.base import BaseBackend, Generation

Scorer = Callable[[str, list[str]], dict[str, float]]


def _uniform(prompt: str, labels: list[str]) -> dict[str, float]:
    return {label: -math.log(len(labels)) for label in labels}


class EchoBackend(BaseBackend):
    """``answer(prompt)`` is the generated text; ``scorer(prompt, labels)`` the label log-probs."""

    name = "echo"

    def __init__(self, answer: Callable[[str], str] = lambda p: p, scorer: Scorer = _uniform,
                 model: str = "echo") -> None:
        super().__init__()
        self.answer, self.scorer, self.model, self.identity = answer, scorer, model, model
        self.prompts: list[str] = []  # every prompt that reached the "model"

    def _generate(self, prompts: list[str], *, max_tokens: int, temperature: float, seed: int,
                  stop: tuple[str, ...]) -> list[Generation]:
        self.prompts += prompts
        texts = [self.answer(p) for p in prompts]
        return [Generation(t, len(p.split()), len(t.split()), 0.001) for p, t in zip(prompts, texts)]

    def _label_logprobs(self, prompts: list[str], labels: list[str]) -> list[tuple[dict[str, float], Generation]]:
        self.prompts += prompts
        return [(self.scorer(p, labels), Generation("", len(p.split()), 1, 0.001)) for p in prompts]
