"""Where Cascade keeps its caches: one home for the directory rules."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import BinaryIO, Callable


def cache_root() -> Path:
    """``$CASCADE_CACHE_DIR``, else ``$XDG_CACHE_HOME/cascade``, else ``~/.cache/cascade``."""
    if env := os.environ.get("CASCADE_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cascade"


def models_root() -> Path:
    """``$CASCADE_MODELS_DIR``, else ``models/`` under :func:`cache_root`."""
    if env := os.environ.get("CASCADE_MODELS_DIR"):
        return Path(env)
    return cache_root() / "models"


def write_cache_entry(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write a cache entry with ``write(file)`` into a temporary file renamed onto ``path``, so two
    processes writing one entry both succeed and a reader never sees a torn one. On an
    ``OSError`` (full disk, read-only directory) the temporary file is removed and the error
    raised: each cache decides how to warn."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise
