"""Load every stage pipeline strings can name: the built-in stage modules register themselves
when imported (none of them loads numba, torch or a model at import), then plugins from the
``cascade.stages`` entry point (``name = "module:register_function"``)."""

from __future__ import annotations

import warnings
from importlib.metadata import entry_points

from cascade.context import adaptive_k, budget, mmr  # noqa: F401  (context selection)
from cascade.fuse import combmnz, combsum, linear, rrf, to_docs  # noqa: F401  (they register on import)
from cascade.llm import bsc, first, icr, listwise, pointwise  # noqa: F401  (no LLM library at import)
from cascade.rerank import cross_encoder, dense_rerank, maxsim, mds  # noqa: F401
from cascade.retrieve import bm25, dense, learned_sparse, rm3, run  # noqa: F401

_plugins_loaded = False


def load() -> None:
    """Make sure every built-in stage and plugin is registered (cheap after the first call)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group="cascade.stages"):
        try:
            ep.load()()
        except Exception as exc:  # a broken plugin must not break every pipeline
            warnings.warn(f"cascade stage plugin {ep.name!r} failed to load: {exc}", stacklevel=2)
