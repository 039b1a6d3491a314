"""The value types of LLM calls (:class:`Generation`, :class:`Usage`) and :class:`BaseBackend`,
which concrete backends extend; :mod:`cascade.llm.backend` re-exports them with the protocol."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from cascade.core.errors import CascadeError


@dataclass(frozen=True)
class Generation:
    """One generated answer and what it cost."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    cached: bool = False


@dataclass
class Usage:
    """Running totals of calls, cache hits, tokens and seconds of one backend (or stage)."""

    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    def add(self, gen: Generation) -> None:
        """Count one call; a cached call counts its tokens but costs no seconds."""
        self.calls += 1
        self.prompt_tokens += gen.prompt_tokens
        self.completion_tokens += gen.completion_tokens
        if gen.cached:
            self.cached_calls += 1
        else:
            self.seconds += gen.seconds

    def merge(self, other: Usage) -> None:
        """Add another tally to this one."""
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, float | int]:
        """The totals as a plain dict (JSON-ready)."""
        return dataclasses.asdict(self)


class BaseBackend:
    """What concrete backends share: usage counting around ``_generate`` and ``_label_logprobs``.

    ``identity`` names the model's exact bytes where that is knowable (file path, size and
    mtime; a hub id otherwise): the call cache keys on it.
    """

    name = "base"
    model = ""
    identity = ""

    def __init__(self) -> None:
        self.usage = Usage()

    def generate(self, prompts: Sequence[str], *, max_tokens: int, temperature: float = 0.0, seed: int = 0,
                 stop: Sequence[str] = ()) -> list[Generation]:
        gens = self._generate(list(prompts), max_tokens=max_tokens, temperature=temperature, seed=seed,
                              stop=tuple(stop))
        for g in gens:
            self.usage.add(g)
        return gens

    def label_logprobs(self, prompts: Sequence[str], labels: Sequence[str]) -> list[dict[str, float]]:
        return [scores for scores, _ in self.label_logprobs_counted(prompts, labels)]

    def label_logprobs_counted(self, prompts: Sequence[str],
                               labels: Sequence[str]) -> list[tuple[dict[str, float], Generation]]:
        """Per prompt, the label log-probabilities and what the call cost (a one-token Generation)."""
        if not labels:
            raise CascadeError("label_logprobs needs at least one label")
        out = self._label_logprobs(list(prompts), list(labels))
        for _, g in out:
            self.usage.add(g)
        return out

    def _generate(self, prompts: list[str], *, max_tokens: int, temperature: float, seed: int,
                  stop: tuple[str, ...]) -> list[Generation]:
        raise NotImplementedError

    def _label_logprobs(self, prompts: list[str], labels: list[str]) -> list[tuple[dict[str, float], Generation]]:
        raise NotImplementedError
