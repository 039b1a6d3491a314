"""Where Cascade keeps its caches: one home for the directory rules."""

from __future__ import annotations

import os
from pathlib import Path


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
