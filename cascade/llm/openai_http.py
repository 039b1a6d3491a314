"""Any OpenAI-compatible chat-completions endpoint (vLLM, SGLang, llama.cpp's server, Ollama,
hosted APIs) over HTTP, with httpx (imported when a backend opens).

Spec: ``openai:<base url>#<model>``, e.g. ``openai:http://127.0.0.1:8000/v1#qwen``. The key
comes from ``$CASCADE_LLM_API_KEY`` or ``$OPENAI_API_KEY`` (none: no Authorization header).
Each request is retried on 429, 5xx, timeouts and connection errors with exponential backoff
(``retries``, ``backoff`` seconds doubled each time, ``Retry-After`` honoured up to 30 s);
``concurrency`` requests run at once in threads. Label log-probabilities ask for
``logprobs``/``top_logprobs`` of one generated token; a label not among the top tokens gets
the lowest log-probability seen minus log 2 (it is less likely than any listed token), and a
server that returns no log-probabilities is an error saying so.
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cascade.core.errors import CascadeError
from cascade.llm.base import BaseBackend, Generation

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


def _import_httpx() -> Any:
    try:
        import httpx
    except ImportError:
        raise CascadeError("the openai backend needs httpx: pip install 'cascade-ir[llm]'") from None
    return httpx


class OpenAIBackend(BaseBackend):
    """Chat completions at ``base_url`` (ending in ``/v1``) for ``model``."""

    name = "openai"

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, timeout: float = 120.0,
                 retries: int = 4, backoff: float = 0.5, concurrency: int = 4, top_logprobs: int = 20) -> None:
        super().__init__()
        self.httpx = _import_httpx()
        self.base_url, self.model, self.identity = base_url.rstrip("/"), model, f"{base_url.rstrip('/')}#{model}"
        key = api_key or os.environ.get("CASCADE_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = self.httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)
        self.retries, self.backoff, self.concurrency, self.top = retries, backoff, concurrency, top_logprobs

    @classmethod
    def from_spec(cls, target: str, **options: Any) -> OpenAIBackend:
        url, sep, model = target.partition("#")
        if not url.startswith(("http://", "https://")) or not sep or not model:
            raise CascadeError(f"openai backend spec must be 'openai:http(s)://HOST[:PORT]/v1#MODEL' (got {target!r})")
        return cls(url, model, **options)

    # -- HTTP ----------------------------------------------------------------------------------

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /chat/completions with retries; the parsed JSON answer."""
        httpx = self.httpx
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                resp = self.client.post("/chat/completions", json=body)
            except (httpx.TimeoutException, httpx.TransportError) as err:
                if last:
                    raise CascadeError(f"{self.base_url}: {type(err).__name__} after {attempt + 1} attempts "
                                       f"({err})") from None
                self._sleep(attempt, None)
                continue
            if resp.status_code in RETRY_STATUS and not last:
                self._sleep(attempt, resp.headers.get("retry-after"))
                continue
            if resp.status_code >= 400:
                raise CascadeError(f"{self.base_url}: HTTP {resp.status_code} for model {self.model!r}: "
                                   f"{resp.text[:300]}")
            try:
                return resp.json()
            except ValueError:
                raise CascadeError(f"{self.base_url}: the answer is not JSON: {resp.text[:200]!r}") from None
        raise AssertionError("unreachable")

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        wait = self.backoff * (2 ** attempt)
        if retry_after:
            try:
                wait = max(wait, min(float(retry_after), 30.0))
            except ValueError:
                pass
        time.sleep(wait)

    def _map(self, fn: Any, items: list[Any]) -> list[Any]:
        if self.concurrency <= 1 or len(items) <= 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(fn, items))

    # -- calls -----------------------------------------------------------------------------------

    def _body(self, prompt: str, **extra: Any) -> dict[str, Any]:
        return {"model": self.model, "messages": [{"role": "user", "content": prompt}], **extra}

    def _generate(self, prompts: list[str], *, max_tokens: int, temperature: float, seed: int,
                  stop: tuple[str, ...]) -> list[Generation]:
        def one(prompt: str) -> Generation:
            start = time.perf_counter()
            extra: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature, "seed": seed}
            if stop:
                extra["stop"] = list(stop)
            data = self._post(self._body(prompt, **extra))
            text = _choice(data, self.base_url)["message"].get("content") or ""
            usage = data.get("usage") or {}
            return Generation(text, int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)),
                              time.perf_counter() - start)

        return self._map(one, prompts)

    def _label_logprobs(self, prompts: list[str], labels: list[str]) -> list[tuple[dict[str, float], Generation]]:
        def one(prompt: str) -> tuple[dict[str, float], Generation]:
            start = time.perf_counter()
            data = self._post(self._body(prompt, max_tokens=1, temperature=0.0, logprobs=True,
                                         top_logprobs=self.top))
            top = self._top_logprobs(data)
            floor = min(top.values(), default=0.0) - math.log(2)
            scores = {label: top.get(label, floor) for label in labels}
            usage = data.get("usage") or {}
            gen = Generation("", int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 1)),
                             time.perf_counter() - start)
            return scores, gen

        return self._map(one, prompts)

    def _top_logprobs(self, data: dict[str, Any]) -> dict[str, float]:
        """{token text (stripped): log-prob} of the first generated token's top alternatives."""
        content = (_choice(data, self.base_url).get("logprobs") or {}).get("content")
        if not content:
            raise CascadeError(f"{self.base_url} returned no token log-probabilities for {self.model!r}; this stage "
                               "needs a server that supports 'logprobs'/'top_logprobs' (vLLM, llama.cpp's server, "
                               "OpenAI chat models), or use the llama-cpp/transformers backends")
        out: dict[str, float] = {}
        for alt in content[0].get("top_logprobs") or [content[0]]:
            token = str(alt["token"]).strip()
            lp = float(alt["logprob"])
            out[token] = max(out.get(token, -math.inf), lp) if token in out else lp
        return out


def _choice(data: dict[str, Any], where: str) -> dict[str, Any]:
    try:
        return data["choices"][0]
    except (KeyError, IndexError, TypeError):
        raise CascadeError(f"{where}: the answer has no choices: {str(data)[:200]}") from None
