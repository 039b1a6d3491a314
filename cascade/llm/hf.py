"""Causal language models through transformers, for what needs the model's insides: first-token
logits (FIRST, label log-probabilities) and attention (ICR). torch and transformers are imported
when a backend opens.

``target``: a model directory, a hub id, a ``.gguf`` file (loaded with ``gguf_file=``; needs the
``gguf`` and ``accelerate`` packages; weights are dequantised to float32), or ``qwen`` (the GGUF that
``python bench/get_models.py`` fetches). The model runs with eager attention, so attention
weights can be read (:meth:`TransformersBackend.attention`).
"""

from __future__ import annotations

import hashlib
import time
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cascade.core.errors import CascadeError
from cascade.llm.base import BaseBackend, Generation
from cascade.models.resolve import hub_options

Span = tuple[int, int]  # [start, end) characters of the user message


def _require() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError:
        raise CascadeError("the transformers backend needs torch and transformers: "
                           "pip install 'cascade-ir[neural]'") from None
    return torch, transformers


def _location(target: str) -> tuple[str, dict[str, Any]]:
    """(what from_pretrained gets, extra options) for ``target``."""
    if target == "qwen":
        from cascade.llm.llama_cpp import resolve_gguf

        target = str(resolve_gguf("qwen"))
    path = Path(target).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise CascadeError(f"transformers: no GGUF file at {path}")
        return str(path.parent), {"gguf_file": path.name}
    return (str(path) if path.exists() else target), {}


def _fingerprint(location: str, options: dict[str, Any]) -> str:
    path = Path(location)
    if not path.is_dir():
        return location
    files = [path / options["gguf_file"]] if "gguf_file" in options else sorted(p for p in path.rglob("*") if p.is_file())
    h = hashlib.blake2b(digest_size=12)
    for f in files:
        st = f.stat()
        h.update(f"{f.name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return f"{path.resolve()}|{h.hexdigest()}"


class TransformersBackend(BaseBackend):
    """A causal LM on the CPU (or ``device``), eager attention, chat template from its tokenizer."""

    name = "transformers"

    def __init__(self, target: str, *, device: str = "cpu", dtype: str = "float32") -> None:
        super().__init__()
        self.torch, transformers = _require()
        location, extra = _location(target)
        self.model = target
        self.identity = _fingerprint(location, extra)
        options = {**hub_options(location), **extra}
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(location, **options)
            self.lm = transformers.AutoModelForCausalLM.from_pretrained(
                location, attn_implementation="eager", dtype=getattr(self.torch, dtype), **options)
        except (OSError, ValueError, ImportError) as err:
            hint = " (a .gguf needs: pip install gguf accelerate)" if "gguf_file" in extra else ""
            raise CascadeError(f"transformers cannot load {target}: {err}{hint}") from None
        self.lm.to(device).eval()
        self._kept_prefix: tuple[tuple[int, ...], Any] | None = None  # (prefix ids, their key-value cache)
        if not getattr(self.tokenizer, "chat_template", None):
            raise CascadeError(f"{target}'s tokenizer has no chat template; use an instruct model")

    # -- prompts ---------------------------------------------------------------------------------

    def chat_text(self, prompt: str) -> str:
        return self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                  add_generation_prompt=True)

    def _encode(self, prompt: str) -> Any:
        return self.tokenizer(self.chat_text(prompt), add_special_tokens=False, return_tensors="pt")["input_ids"]

    # -- calls -----------------------------------------------------------------------------------

    def _generate(self, prompts: list[str], *, max_tokens: int, temperature: float, seed: int,
                  stop: tuple[str, ...]) -> list[Generation]:
        out = []
        for prompt in prompts:
            start = time.perf_counter()
            ids = self._encode(prompt)
            self.torch.manual_seed(seed)
            sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
            with self.torch.inference_mode():
                full = self.lm.generate(ids, attention_mask=self.torch.ones_like(ids), max_new_tokens=max_tokens,
                                        pad_token_id=self.tokenizer.eos_token_id, **sampling)
            new = full[0, ids.shape[1]:]
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            for s in stop:
                text = text.split(s)[0] if s in text else text
            out.append(Generation(text, int(ids.shape[1]), int(len(new)), time.perf_counter() - start))
        return out

    def first_token_logprobs(self, prompt: str) -> tuple[np.ndarray, int]:
        """Log-softmax over the vocabulary at the first answer position, and the prompt's length."""
        ids = self._encode(prompt)
        with self.torch.inference_mode():
            logits = self.lm(ids).logits[0, -1].float()
        return self.torch.log_softmax(logits, dim=-1).numpy(), int(ids.shape[1])

    def _label_logprobs(self, prompts: list[str], labels: list[str]) -> list[tuple[dict[str, float], Generation]]:
        firsts: list[int] = []
        for label in labels:
            tok = self.tokenizer.encode(label, add_special_tokens=False)
            firsts.append(-1 if not tok or tok[0] in firsts else tok[0])
        out = []
        for prompt in prompts:
            start = time.perf_counter()
            lp, n = self.first_token_logprobs(prompt)
            scores = {label: (float(lp[t]) if t >= 0 else -np.inf) for label, t in zip(labels, firsts)}
            out.append((scores, Generation("", n, 1, time.perf_counter() - start)))
        return out

    def attention(self, prompt: str, spans: Sequence[Span], query: Span) -> list[np.ndarray]:
        """Per span of the user message ``prompt``, the attention each of its tokens receives from
        the scoring tokens: those of the ``query`` span and every token after it (the rest of
        the message and the chat template's closing tokens), averaged over the scoring tokens
        and summed over heads and layers, as in ICR (counted in ``usage``)."""
        scores, gen = self.attention_counted(prompt, spans, query)
        self.usage.add(gen)
        return scores

    def attention_counted(self, prompt: str, spans: Sequence[Span], query: Span) -> tuple[list[np.ndarray], Generation]:
        """:meth:`attention` and what the forward passes cost. The tokens before the scoring
        tokens run once and their keys and values are kept: a next call whose prompt starts with
        the same tokens (ICR's calibration prompt, the same passages with the query ``N/A``) only
        runs its own scoring tokens."""
        start = time.perf_counter()
        text = self.chat_text(prompt)
        base = text.find(prompt)
        if base < 0:
            raise CascadeError("the chat template changed the prompt's text; attention spans cannot be placed")
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, return_tensors="pt")
        offsets = enc.pop("offset_mapping")[0].numpy()
        ids = enc["input_ids"]
        scoring = _tokens_in(offsets, query[0] + base, len(text))
        if len(scoring) == 0:
            raise CascadeError("the query span holds no token")
        split = int(scoring[0])
        cache, computed = self._prefix_cache(ids[:, :split])
        with self.torch.inference_mode():
            try:
                out = self.lm(ids[:, split:], **{self._cache_keyword: cache}, use_cache=True, output_attentions=True)
            finally:
                cache.crop(-(ids.shape[1] - split))  # back to the shared prefix for the next call
        # per layer (heads, scoring tokens, all tokens): summed over heads and layers, averaged over scoring tokens
        row = sum(a[0].float().sum(dim=0).mean(dim=0) for a in out.attentions).numpy().astype(np.float64)
        tokens = [row[_tokens_in(offsets, s + base, e + base)] for s, e in spans]
        gen = Generation("", computed + len(ids[0]) - split, 0, time.perf_counter() - start)
        return tokens, gen

    def _prefix_cache(self, prefix: Any) -> tuple[Any, int]:
        """(keys and values of the tokens ``prefix`` [1, n], how many tokens had to run): kept from
        the last call when it had the same prefix."""
        key = tuple(prefix[0].tolist())
        kept = self._kept_prefix
        if kept is not None and kept[0] == key:
            return kept[1], 0
        from transformers import DynamicCache

        cache = DynamicCache()
        if len(key):
            with self.torch.inference_mode():
                self.lm(prefix, **{self._cache_keyword: cache}, use_cache=True)
        self._kept_prefix = (key, cache)
        return cache, len(key)

    @cached_property
    def _cache_keyword(self) -> str:
        """How the model's forward() takes a key-value cache (``past_key_values`` is being renamed
        ``cache`` in transformers 5)."""
        import inspect

        return "cache" if "cache" in inspect.signature(self.lm.forward).parameters else "past_key_values"


def _tokens_in(offsets: np.ndarray, start: int, end: int) -> np.ndarray:
    """Positions of the tokens overlapping characters [start, end)."""
    return np.flatnonzero((offsets[:, 0] < end) & (offsets[:, 1] > start))
