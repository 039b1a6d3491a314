"""Bi-encoders: one forward pass gives a document's dense vector and its contextual token vectors.

Any sentence-transformers model works: a short alias (``minilm``, ``mpnet``), a local directory
or a hub id. The token vectors (the transformer's last hidden states, L2-normalised, padding
dropped) feed late-interaction MaxSim without a ColBERT checkpoint, as in the multi-vector
reranking setup of Martinico et al., "Multivector Reranking in the Era of Strong First-Stage
Retrievers" (2025).

>>> enc = Encoder("minilm")                                    # doctest: +SKIP
>>> out = enc.encode(["cats purr", "dogs bark"], tokens=True)  # doctest: +SKIP
>>> out.dense.shape, out.token_offsets.tolist()                # doctest: +SKIP
((2, 384), [0, 5, 10])
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future
from functools import cached_property
from typing import Any, Callable, Sequence

import numpy as np

from cascade.core.errors import CascadeError
from cascade.models import onnx_export
from cascade.models.encoded import Encoded
from cascade.models.onnx_encoder import OnnxEncoder, is_onnx_model
from cascade.models.resolve import default_device, load_sentence_transformer, require, resolve_model

ProgressFn = Callable[[int], None]


class Encoder:
    """A sentence-transformers bi-encoder, batched; ``device`` defaults to :func:`default_device`."""

    def __init__(self, model: str = "minilm", *, batch_size: int = 32, max_length: int | None = None,
                 device: str | None = None) -> None:
        if batch_size < 1:
            raise CascadeError(f"batch_size must be at least 1 (got {batch_size})")
        self.name = model
        self.location = resolve_model(model)
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = device or default_device()

    @cached_property
    def model(self) -> Any:
        model = load_sentence_transformer(self.location, self.device)
        if self.max_length is not None:
            model.max_seq_length = self.max_length
        return model

    def load(self) -> None:
        """Load the model now (it loads on first use otherwise)."""
        self.model  # noqa: B018

    @property
    def dim(self) -> int:
        model = self.model
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get_dim())

    def spec(self) -> dict[str, Any]:
        """What the index records so queries are encoded the same way."""
        return {"model": self.name, "location": str(self.location), "dim": self.dim,
                "max_length": int(self.model.max_seq_length)}

    def _tokenize(self, texts: list[str]) -> dict[str, Any]:
        model = self.model
        prepare = getattr(model, "preprocess", None) or model.tokenize  # renamed in sentence-transformers 6
        features = prepare(texts)
        return {k: v.to(self.device) if hasattr(v, "to") else v for k, v in features.items()}

    def encode(self, texts: Sequence[str], *, tokens: bool = False, progress: ProgressFn | None = None) -> Encoded:
        """Encode ``texts`` (longest first within batches, so padding stays small)."""
        torch = require("torch", "encoding with a bi-encoder")
        torch.set_num_threads(max(1, os.cpu_count() or 1))
        order = np.argsort([-len(t) for t in texts], kind="stable")
        dense = np.zeros((len(texts), self.dim), dtype=np.float32)
        per_text: list[np.ndarray | None] = [None] * len(texts)
        done = 0
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = order[start:start + self.batch_size]
                features = self._tokenize([texts[i] for i in batch])
                out = self.model(features)
                sentence = torch.nn.functional.normalize(out["sentence_embedding"].float(), dim=-1)
                dense[batch] = sentence.cpu().numpy()
                if tokens:
                    hidden = torch.nn.functional.normalize(out["token_embeddings"].float(), dim=-1)
                    mask = out["attention_mask"].bool()
                    for row, i in enumerate(batch):
                        per_text[i] = hidden[row][mask[row]].cpu().numpy().astype(np.float16)
                done += len(batch)
                if progress is not None:
                    progress(done)
        if not tokens:
            return Encoded(dense)
        lengths = [len(v) for v in per_text]  # type: ignore[arg-type]
        offsets = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        vectors = np.concatenate(per_text) if texts else np.zeros((0, self.dim), np.float16)  # type: ignore[arg-type]
        return Encoded(dense, offsets, vectors)


def make_encoder(model: str, *, batch_size: int = 32, max_length: int | None = None) -> Any:
    """An :class:`OnnxEncoder` for ``minilm-onnx`` or a directory holding a ``*.onnx`` model
    (no torch needed), else a sentence-transformers :class:`Encoder`."""
    if is_onnx_model(model):
        return OnnxEncoder(model, batch_size=batch_size, max_length=max_length)
    return Encoder(model, batch_size=batch_size, max_length=max_length)


_SHARED: dict[str, Any] = {}


def shared_encoder(model: str) -> Any:
    """One loaded encoder per model name in a process: the stages that encode queries and the
    encoding of a collection's documents share it, so a model loads once."""
    if model not in _SHARED:
        _SHARED[model] = make_encoder(model)
    return _SHARED[model]


class QueryEncodings:
    """Query encodings of one model, kept per query text: one forward pass gives a query's
    dense vector and its token vectors, so the stages of a pipeline (dense retrieval, then
    MaxSim, then dense rescoring) encode each query once. The oldest are dropped beyond
    ``limit`` texts.

    :meth:`prefetch` encodes on a background thread (the encoders release the GIL), so the
    work before the first stage that needs the vectors overlaps it; that stage waits for it and
    reports its cost through :meth:`claim_seconds`, measured where the encoding ran. Thread-safe."""

    def __init__(self, encoder: Any, limit: int = 50_000, *, export: bool = False) -> None:
        self.encoder, self.limit = encoder, limit
        self._export = export  # export the torch encoder for later processes once it is loaded
        self._seen: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._cost: dict[str, float] = {}  # seconds each text's encoding took, until a stage claims them
        self._lock = threading.RLock()
        self._pending: Future[None] | None = None

    def load(self) -> None:
        """Load the model now (what a stage's ``prepare`` does; with a prefetch running, that
        loads it, and the first use of the vectors waits for both)."""
        if self._pending is None:
            self._load()

    def _load(self) -> None:
        with self._lock:
            self.encoder.load()
            if self._export:
                self._export = False
                found = onnx_export.export_for_queries(self.encoder)
                if found is not None:  # this process too, so every process encodes queries alike
                    self.encoder = OnnxEncoder(str(found[0]), max_length=found[1])
                    self._seen.clear()
                    self._cost.clear()
                    self.encoder.load()

    def prefetch(self, texts: Sequence[str]) -> None:
        """Start loading the model and encoding ``texts`` on a background thread (nothing when
        they are all encoded or a prefetch is running); an error surfaces where they are used."""
        with self._lock:
            missing = self._missing(texts)
            if not missing or self._pending is not None:
                return
            pending: Future[None] = Future()
            self._pending = pending

        def work() -> None:
            try:
                self._encode(missing)
            except BaseException as exc:  # handed to the stage that waits for the vectors
                pending.set_exception(exc)
            else:
                pending.set_result(None)

        threading.Thread(target=work, name="cascade-query-encoding", daemon=True).start()

    def dense(self, texts: Sequence[str]) -> np.ndarray:
        """float32 [n, dim]: each text's unit-length vector."""
        self._encode_missing(texts)
        with self._lock:
            return np.stack([self._seen[t][0] for t in texts]) if texts else \
                np.zeros((0, self.encoder.dim), np.float32)

    def tokens(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Each text's contextual token vectors, float32 [tokens, dim]."""
        self._encode_missing(texts)
        with self._lock:
            return [self._seen[t][1] for t in texts]

    def claim_seconds(self, texts: Sequence[str]) -> float:
        """Seconds that encoding ``texts`` took and no stage has claimed yet (the stage that
        first uses a query's encoding reports its cost; later ones find it free)."""
        with self._lock:
            return sum(self._cost.pop(t, 0.0) for t in dict.fromkeys(texts))

    def _missing(self, texts: Sequence[str]) -> list[str]:
        return list(dict.fromkeys(t for t in texts if t not in self._seen))

    def _encode_missing(self, texts: Sequence[str]) -> None:
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()  # the background encoding's error, if it failed
        self._encode(list(texts))

    def _encode(self, texts: list[str]) -> None:
        """Encode those of ``texts`` not encoded yet (checked under the lock: another thread may
        have encoded some meanwhile)."""
        with self._lock:
            missing = self._missing(texts)
            if not missing:
                return
            self._load()
            start = time.perf_counter()
            out = self.encoder.encode(missing, tokens=True)
            share = (time.perf_counter() - start) / len(missing)
            for i, text in enumerate(missing):
                self._seen[text] = (out.dense[i], out.tokens_of(i).astype(np.float32))
                self._cost[text] = self._cost.get(text, 0.0) + share
            while len(self._seen) > self.limit:
                self._cost.pop(dropped := next(iter(self._seen)), None)
                del self._seen[dropped]


_QUERIES: dict[str, QueryEncodings] = {}


def query_encodings(model: str) -> QueryEncodings:
    """The process's query encodings for ``model``: by the ONNX export of a sentence-transformers
    model when one is cached (no torch import, :mod:`cascade.models.onnx_export`), else the
    shared encoder loads, makes that export and hands over to it (torch stays only when the
    model cannot be exported), so every process encodes a query to the same bits."""
    if model not in _QUERIES:
        found = None if is_onnx_model(model) else onnx_export.exported(resolve_model(model))
        if found is not None:
            directory, max_length = found
            _QUERIES[model] = QueryEncodings(OnnxEncoder(str(directory), max_length=max_length))
        else:
            encoder = shared_encoder(model)
            _QUERIES[model] = QueryEncodings(encoder, export=isinstance(encoder, Encoder))
    return _QUERIES[model]
