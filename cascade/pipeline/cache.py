"""On-disk cache of stage outputs, content-addressed by stage key and query set.

An entry is written to a temporary file and renamed into place, so two processes running
the same stage at once both succeed and a reader never sees a torn or mixed entry. A cache
that cannot be written (full disk, read-only) costs one warning, never the results.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from cascade.core.candidates import SHARED, Candidates, DocIdSpace
from cascade.core.paths import cache_root, write_cache_entry


class StageCache:
    """Stage outputs under ``root`` (default ``<cache root>/stages``)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or cache_root() / "stages"
        self.warned = False  # about an unwritable cache: once per cache object

    def _path(self, key: Any, queries_hash: str) -> Path:
        digest = hashlib.blake2b(f"{key!r}|{queries_hash}".encode(), digest_size=20).hexdigest()
        return self.root / digest[:2] / f"{digest}.npz"

    def get(self, key: Any, queries_hash: str, space: DocIdSpace) -> tuple[Candidates, float] | None:
        path = self._path(key, queries_hash)
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                cands = Candidates(meta["query_ids"], data["offsets"], data["doc"], data["score"], space,
                                   query_seconds=data["query_seconds"], timing=meta.get("timing", SHARED),
                                   latency_sample=data["latency_sample"] if "latency_sample" in data else None)
                return cands, float(meta["seconds"])
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
            return None  # absent, damaged, or written by an incompatible version: recompute

    def has(self, key: Any, queries_hash: str) -> bool:
        """Whether an output is stored (it may still prove unreadable: :meth:`get` decides)."""
        return self._path(key, queries_hash).is_file()

    def put(self, key: Any, queries_hash: str, cands: Candidates, seconds: float) -> None:
        """Store a stage's output. The cache is an optimisation: when it cannot be written (a
        full disk, a read-only directory), one warning says so, the partial entry is removed,
        and the run goes on without caching."""
        path = self._path(key, queries_hash)
        meta = json.dumps({"query_ids": cands.query_ids, "seconds": seconds, "key": repr(key), "timing": cands.timing})
        qs = cands.query_seconds if cands.query_seconds is not None else np.full(len(cands), seconds / max(len(cands), 1))
        extra = {} if cands.latency_sample is None else {"latency_sample": cands.latency_sample}

        def write(f: Any) -> None:
            np.savez(f, meta=np.array(meta), offsets=cands.offsets, doc=cands.doc, score=cands.score,
                     query_seconds=qs, **extra)

        try:
            write_cache_entry(path, write)
        except OSError as err:
            self._warn(err)

    def _warn(self, err: OSError) -> None:
        if self.warned:
            return
        self.warned = True
        why = f"{err.strerror or err}" + (" (disk full?)" if err.errno is None else "")
        print(f"warning: the stage cache {self.root} cannot be written ({why}); results are not cached, "
              "the run goes on", file=sys.stderr, flush=True)

    def clear(self) -> int:
        """Delete every entry; returns how many there were."""
        n = sum(1 for _ in self.root.rglob("*.npz")) if self.root.exists() else 0
        shutil.rmtree(self.root, ignore_errors=True)
        return n
