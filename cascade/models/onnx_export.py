"""Query encoding without torch: a sentence-transformers encoder exported once to ONNX (float32).

Importing torch and sentence-transformers takes 5-15 s on a small machine, longer than encoding
the queries of a whole test collection. So the first time a process encodes queries with a
sentence-transformers model (torch loaded anyway), the model's transformer is exported to an
ONNX graph with the same float32 weights (``torch.onnx.export``), checked against the torch
model on sample texts (dense vectors within :data:`TOLERANCE`, else the export is discarded
and torch stays in use) and cached under :func:`~cascade.core.paths.models_root`; later
processes encode queries with ONNX Runtime and never import torch. Documents are still encoded
by torch; the vectors of the two runtimes differ by float rounding (about 1e-6).

Only the plain bi-encoder layout is exported: modules ``Transformer``, ``Pooling`` (mean) and
optionally ``Normalize``, no lower-casing by sentence-transformers itself, a fast tokenizer
(``tokenizer.json``), a local directory (an alias resolves to one). Anything else keeps torch.
``CASCADE_QUERY_ONNX=0`` turns the export and its use off.

>>> export_dir("/nonexistent/model") is None
True
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from cascade.core.paths import models_root
from cascade.models.onnx_encoder import OnnxEncoder, mean_pooling

VERSION = 1  # of the export recipe: part of the cache key
TOLERANCE = 1e-4  # largest |difference| allowed between torch's and the export's dense vectors
SAMPLES = ["what causes a fever", "A longer sample text, so that the batch is padded: the export must "
           "mask padding exactly as the torch model does.", "x"]
PLAIN_MODULES = (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"])  # class names
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
log = logging.getLogger(__name__)


def enabled() -> bool:
    """Whether queries may be encoded by an export (``CASCADE_QUERY_ONNX`` is not ``0``; the
    device is the CPU)."""
    device = os.environ.get("CASCADE_DEVICE", "cpu")
    return os.environ.get("CASCADE_QUERY_ONNX", "1").strip() != "0" and device == "cpu"


def _module_types(location: Path) -> list[str]:
    """The class names of the modules (their packages moved between sentence-transformers versions)."""
    modules = json.loads((location / "modules.json").read_text())
    return [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]


def exportable(location: Path) -> bool:
    """Whether the sentence-transformers directory ``location`` has the plain bi-encoder layout."""
    try:
        if _module_types(location) not in PLAIN_MODULES or not (location / "tokenizer.json").is_file():
            return False
        config = location / "sentence_bert_config.json"
        if config.is_file() and json.loads(config.read_text()).get("do_lower_case"):
            return False
        pooling = location / "1_Pooling" / "config.json"
        return mean_pooling(json.loads(pooling.read_text()) if pooling.is_file() else {})
    except (OSError, ValueError, AttributeError):
        return False


def export_dir(location: str) -> Path | None:
    """Where the export of the model directory ``location`` lives (made or not), keyed by the
    names, sizes and modification times of its files; None when it cannot be exported."""
    path = Path(location)
    if not path.is_dir() or not exportable(path):
        return None
    key = hashlib.blake2b(f"v{VERSION}|{path.resolve()}".encode(), digest_size=12)
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        stat = file.stat()
        key.update(f"|{file.relative_to(path)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return models_root() / "query-onnx" / key.hexdigest()


def exported(location: str) -> tuple[Path, int] | None:
    """(directory, max length) of a finished, checked export of ``location``, if there is one."""
    return _finished(export_dir(location) if enabled() else None)


def _finished(where: Path | None) -> tuple[Path, int] | None:
    if where is None or not (where / "export.json").is_file():
        return None
    info = json.loads((where / "export.json").read_text())
    return (where, int(info["max_length"])) if info.get("ok") else None


def _last_hidden_state(model: Any) -> Any:
    """The transformer ``model`` called with keyword inputs, returning only its last hidden
    states, in eval mode (the exporter passes inputs by position, which newer transformers'
    forward() does not take; a module in training mode would export its dropout)."""
    import torch

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    return LastHiddenState().eval()


def write_export(st_model: Any, directory: Path) -> None:
    """Write the transformer of the loaded sentence-transformers model ``st_model`` into
    ``directory`` as ``model.onnx`` (float32, opset 17, dynamic batch and sequence; the legacy
    TorchScript exporter, which needs no onnxscript) and its fast tokenizer as ``tokenizer.json``:
    a directory :class:`~cascade.models.onnx_encoder.OnnxEncoder` loads."""
    import warnings

    import torch

    module = st_model[0]
    features = module.tokenizer(SAMPLES[:2], padding=True, return_tensors="pt")  # padded: the mask is kept
    args = tuple(features.get(name, torch.zeros_like(features["input_ids"])) for name in INPUTS)
    axes = {name: {0: "batch", 1: "sequence"} for name in (*INPUTS, "last_hidden_state")}
    directory.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracing notes
        torch.onnx.export(_last_hidden_state(module.auto_model), args, str(directory / "model.onnx"),
                          input_names=list(INPUTS), output_names=["last_hidden_state"], dynamic_axes=axes,
                          opset_version=17, dynamo=False)
    module.tokenizer.backend_tokenizer.save(str(directory / "tokenizer.json"))


def export_for_queries(encoder: Any) -> tuple[Path, int] | None:
    """Export the loaded sentence-transformers :class:`~cascade.models.encoders.Encoder`
    ``encoder`` unless it is exported already (see the module docstring); returns what
    :func:`exported` returns: None when the model cannot be exported or the export does not
    match torch. Never raises: a failed export only means queries keep using torch."""
    where = export_dir(str(encoder.location)) if enabled() else None
    if where is None or (where / "export.json").is_file():
        return _finished(where)
    work = where.parent / f".{where.name}.{uuid.uuid4().hex[:8]}"
    try:
        write_export(encoder.model, work)
        max_length = int(encoder.model.max_seq_length)
        difference = _difference(encoder, work, max_length)
        ok = difference <= TOLERANCE
        info = {"ok": ok, "max_length": max_length, "max_dense_difference": difference, "source": encoder.location}
        if not ok:
            log.warning("ONNX export of %s differs from torch by %.2g: queries keep using torch",
                        encoder.location, difference)
            (work / "model.onnx").unlink()
        (work / "export.json").write_text(json.dumps(info, indent=1))
        try:
            os.rename(work, where)
        except OSError:
            pass  # another process published it first: theirs is as good
        return _finished(where)
    except Exception as err:  # noqa: BLE001  (the exporter raises many kinds; torch keeps working)
        log.warning("could not export %s to ONNX for query encoding (%s: %s): queries keep using torch",
                    encoder.location, err.__class__.__name__, str(err)[:200])
        return None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _difference(encoder: Any, directory: Path, max_length: int) -> float:
    """Largest |difference| between the dense vectors of torch and of the export on :data:`SAMPLES`."""
    torch_dense = encoder.encode(SAMPLES).dense
    onnx_dense = OnnxEncoder(str(directory), max_length=max_length).encode(SAMPLES).dense
    return float(np.abs(torch_dense - onnx_dense).max())
