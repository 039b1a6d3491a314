"""The one small interface every LLM backend implements, and ``open_backend`` to pick one.

A backend turns user messages into text (``generate``) or into the log-probability of each
of a few labels as the first generated token (``label_logprobs``); it applies the model's chat
template itself. Backends import their library only when opened, so ``import cascade`` loads
none of them.

    >>> from cascade.llm import open_backend                       # doctest: +SKIP
    >>> llm = open_backend("llama-cpp:smollm2")                    # doctest: +SKIP
    >>> llm.label_logprobs(["Is the sky blue? Answer yes or no."], ["yes", "no"])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from cascade.core.errors import CascadeError
from cascade.llm.base import BaseBackend, Generation, Usage

__all__ = ["Backend", "BaseBackend", "Generation", "Usage", "open_backend", "BACKENDS"]


@runtime_checkable
class Backend(Protocol):
    """What a stage or a judge needs of a language model."""

    name: str
    model: str
    usage: Usage

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        seed: int = 0,
        stop: Sequence[str] = (),
    ) -> list[Generation]:
        """One answer per prompt (a user message; the backend applies the chat template)."""
        ...

    def label_logprobs(self, prompts: Sequence[str], labels: Sequence[str]) -> list[dict[str, float]]:
        """Per prompt, the log-probability of each label as the first generated token."""
        ...


def _llama_cpp(target: str, **options: Any) -> Backend:
    from cascade.llm.llama_cpp import LlamaCppBackend

    return LlamaCppBackend(target, **options)


def _openai(target: str, **options: Any) -> Backend:
    from cascade.llm.openai_http import OpenAIBackend

    return OpenAIBackend.from_spec(target, **options)


def _transformers(target: str, **options: Any) -> Backend:
    from cascade.llm.hf import TransformersBackend

    return TransformersBackend(target, **options)


BACKENDS: dict[str, Callable[..., Backend]] = {
    "llama-cpp": _llama_cpp,
    "openai": _openai,
    "transformers": _transformers,
}


def open_backend(spec: str, **options: Any) -> Backend:
    """Open ``"<kind>:<target>"``: ``llama-cpp:/m.gguf``, ``llama-cpp:qwen``, ``llama-cpp:smollm2``,
    ``openai:http://127.0.0.1:8000/v1#model``, ``transformers:/path/dir`` (or a hub id).

    Wrapped in the persistent call cache unless ``cache=False``.
    """
    kind, sep, target = spec.partition(":")
    if not sep or not target:
        raise CascadeError(f"LLM spec {spec!r} must be '<backend>:<model>'; backends: {', '.join(BACKENDS)}")
    if kind not in BACKENDS:
        raise CascadeError(f"unknown LLM backend {kind!r} in {spec!r}; choose one of: {', '.join(BACKENDS)}")
    use_cache = options.pop("cache", True)
    backend = BACKENDS[kind](target, **options)
    if not use_cache:
        return backend
    from cascade.llm.cache import CachedBackend

    return CachedBackend(backend)
