"""On-disk cache of stage outputs, content-addressed by stage key and query set.

An entry is written to a temporary file and renamed into place, so two processes running
the same stage at once both succeed and a reader never sees a torn or mixed entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from cascade.core.candidates import SHARED, Candidates, DocIdSpace
from cascade.core.paths import cache_root


class StageCache:
    """Stage outputs under ``root`` (default ``<cache root>/stages``)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or cache_root() / "stages"

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

    def put(self, key: Any, queries_hash: str, cands: Candidates, seconds: float) -> None:
        path = self._path(key, queries_hash)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        meta = json.dumps({"query_ids": cands.query_ids, "seconds": seconds, "key": repr(key), "timing": cands.timing})
        qs = cands.query_seconds if cands.query_seconds is not None else np.full(len(cands), seconds / max(len(cands), 1))
        with open(tmp, "wb") as f:
            extra = {} if cands.latency_sample is None else {"latency_sample": cands.latency_sample}
            np.savez(f, meta=np.array(meta), offsets=cands.offsets, doc=cands.doc, score=cands.score,
                     query_seconds=qs, **extra)
        os.replace(tmp, path)

    def clear(self) -> int:
        """Delete every entry; returns how many there were."""
        n = sum(1 for _ in self.root.rglob("*.npz")) if self.root.exists() else 0
        shutil.rmtree(self.root, ignore_errors=True)
        return n
