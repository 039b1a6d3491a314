"""A persistent cache of LLM calls: a rerun of the same prompt with the same settings is free.

An entry is keyed by the backend's name, the model's identity (a local file's path, size and
mtime; a hub id or server model name otherwise), the kind of call, the prompt and every
decoding setting; it lives as one small JSON file under ``<cache root>/llm`` (see
:func:`cascade.core.paths.cache_root`), written to a temporary name and renamed into place.
Hits are counted as ``cached_calls`` in the wrapper's :class:`~cascade.llm.backend.Usage`
(their tokens count too, their seconds do not). A cache that cannot be written costs one
warning line, never the results.

>>> import tempfile, pathlib
>>> from cascade.llm.testing import EchoBackend
>>> cached = CachedBackend(EchoBackend(), root=pathlib.Path(tempfile.mkdtemp()))
>>> _ = cached.generate(["hi"], max_tokens=4); _ = cached.generate(["hi"], max_tokens=4)
>>> cached.usage.calls, cached.usage.cached_calls
(2, 1)
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from cascade.core.paths import cache_root, write_cache_entry
from cascade.llm.base import BaseBackend, Generation, Usage


class CallCache:
    """JSON entries under ``root`` (default ``<cache root>/llm``), one file per call."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or cache_root() / "llm"
        self.warned = False

    @staticmethod
    def digest(key: Any) -> str:
        return hashlib.blake2b(json.dumps(key, sort_keys=True).encode(), digest_size=20).hexdigest()

    def _path(self, digest: str) -> Path:
        return self.root / digest[:2] / f"{digest}.json"

    def get(self, key: Any) -> dict[str, Any] | None:
        try:
            return json.loads(self._path(self.digest(key)).read_text())
        except (OSError, ValueError):
            return None

    def put(self, key: Any, value: dict[str, Any]) -> None:
        data = json.dumps(value).encode()
        try:
            write_cache_entry(self._path(self.digest(key)), lambda f: f.write(data))
        except OSError as err:
            self._warn(err)

    def _warn(self, err: OSError) -> None:
        if not self.warned:
            self.warned = True
            print(f"warning: the LLM call cache {self.root} cannot be written ({err.strerror or err}); "
                  "calls are not cached, the run goes on", file=sys.stderr, flush=True)


class CachedBackend:
    """A backend whose calls go through a :class:`CallCache`; ``usage`` counts hits and misses."""

    def __init__(self, inner: BaseBackend, root: Path | None = None) -> None:
        self.inner = inner
        self.name, self.model = inner.name, inner.model
        self.cache = CallCache(root)
        self.usage = Usage()

    def __getattr__(self, attr: str) -> Any:  # attention(), tokenizer, ... of the wrapped backend
        return getattr(self.inner, attr)

    def _key(self, kind: str, prompt: str, settings: dict[str, Any]) -> list[Any]:
        return [self.inner.name, self.inner.identity or self.inner.model, kind, prompt, settings]

    def generate(self, prompts: Sequence[str], *, max_tokens: int, temperature: float = 0.0, seed: int = 0,
                 stop: Sequence[str] = ()) -> list[Generation]:
        settings = {"max_tokens": max_tokens, "temperature": temperature, "seed": seed, "stop": list(stop)}
        keys = [self._key("generate", p, settings) for p in prompts]
        found = [self.cache.get(k) for k in keys]
        missing = [i for i, f in enumerate(found) if f is None]
        fresh = self.inner.generate([prompts[i] for i in missing], max_tokens=max_tokens, temperature=temperature,
                                    seed=seed, stop=stop) if missing else []
        out: list[Generation | None] = [None if f is None else Generation(**{**f, "cached": True}) for f in found]
        for i, gen in zip(missing, fresh):
            self.cache.put(keys[i], _gen_dict(gen))
            out[i] = gen
        return self._count(out)

    def label_logprobs(self, prompts: Sequence[str], labels: Sequence[str]) -> list[dict[str, float]]:
        return [scores for scores, _ in self.label_logprobs_counted(prompts, labels)]

    def label_logprobs_counted(self, prompts: Sequence[str],
                               labels: Sequence[str]) -> list[tuple[dict[str, float], Generation]]:
        keys = [self._key("labels", p, {"labels": list(labels)}) for p in prompts]
        found = [self.cache.get(k) for k in keys]
        missing = [i for i, f in enumerate(found) if f is None]
        fresh = self.inner.label_logprobs_counted([prompts[i] for i in missing], labels) if missing else []
        out: list[tuple[dict[str, float], Generation] | None] = [
            None if f is None else (f["scores"], Generation(**{**f["gen"], "cached": True})) for f in found]
        for i, (scores, gen) in zip(missing, fresh):
            self.cache.put(keys[i], {"scores": scores, "gen": _gen_dict(gen)})
            out[i] = (scores, gen)
        self._count([g for _, g in out])  # type: ignore[misc]
        return out  # type: ignore[return-value]

    def attention(self, prompt: str, spans: Any, query: Any) -> Any:
        """The wrapped backend's token attention per span (transformers), cached and counted."""
        import numpy as np

        key = self._key("attention-tokens", prompt, {"spans": [list(s) for s in spans], "query": list(query)})
        found = self.cache.get(key)
        if found is not None:
            gen = Generation(**{**found["gen"], "cached": True})
            scores = [np.array(t, dtype=np.float64) for t in found["tokens"]]
        else:
            scores, gen = self.inner.attention_counted(prompt, spans, query)  # type: ignore[attr-defined]
            self.cache.put(key, {"tokens": [[float(x) for x in t] for t in scores], "gen": _gen_dict(gen)})
        self.usage.add(gen)
        return scores

    def _count(self, gens: list[Any]) -> list[Generation]:
        for g in gens:
            self.usage.add(g)
        return gens


def _gen_dict(gen: Generation) -> dict[str, Any]:
    return {"text": gen.text, "prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.completion_tokens,
            "seconds": gen.seconds}
