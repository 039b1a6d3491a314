"""Scale-out: one collection as N ordinary indexes (shards) searched together, on Ray or locally.

The top layer: it may import every package below and none imports it. Ray is imported only
when a cluster is asked for (``ray=`` / ``--ray``); without it the same shards are searched
one after another in this process, with the same results.

- :mod:`cascade.scale.layout`: the small ``SHARDS.json`` manifest and routing by id hash.
- :mod:`cascade.scale.worker`: what runs next to one shard (a Ray actor, or in process):
  local statistics, BM25 with the collection's statistics, dense top k, writes.
- :mod:`cascade.scale.backends`: calling every shard (in process, or Ray actors with
  restarts, retries and timeouts).
- :mod:`cascade.scale.sharded`: :class:`ShardedIndex` (build, open, add, update, delete).
- :mod:`cascade.scale.search`: scatter-gather BM25 and dense stages with exact merged scores, and
  rerankers run by each shard on its share of the merged candidates.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ShardedIndex", "ShardedBM25", "ShardedDense", "ShardedRerank", "ShardedStage", "is_sharded"]


def __getattr__(name: str) -> Any:
    if name in ("ShardedIndex", "is_sharded"):
        from cascade.scale import sharded

        return getattr(sharded, name)
    if name in ("ShardedBM25", "ShardedDense", "ShardedRerank", "ShardedStage"):
        from cascade.scale import search

        return getattr(search, name)
    raise AttributeError(name)
