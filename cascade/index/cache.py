"""A cache of indexes built for evaluation, keyed by corpus content and analysis settings."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Callable, Iterable, Sequence

from cascade.core.errors import BadIndexError, CascadeError
from cascade.core.paths import cache_root
from cascade.core.types import Doc
from cascade.index.index import Index
from cascade.index.manifest import FORMAT_VERSION
from cascade.text.analyzer import Analyzer


def index_cache_key(content_hash: str, analyzer: Analyzer, fields: Sequence[str], skip_bad: bool) -> str:
    spec = {"content": content_hash, "analyzer": analyzer.to_dict(), "fields": list(fields),
            "skip_bad": skip_bad, "format": FORMAT_VERSION}
    return hashlib.blake2b(json.dumps(spec, sort_keys=True).encode(), digest_size=10).hexdigest()


def cached_index(name: str, content_hash: str, docs: Callable[[], Iterable[Doc]], *,
                 analyzer: Analyzer, fields: Sequence[str] = ("title", "text"), skip_bad: bool = False,
                 progress: Callable[[int], None] | None = None) -> tuple[Index, float, bool]:
    """Open the cached index for this corpus and settings, building it first if needed.

    Returns (index, seconds spent, whether it was built now). Two processes building the
    same entry at once are safe: one publishes, the other opens what was published.
    """
    path = cache_root() / "indexes" / f"{name}-{index_cache_key(content_hash, analyzer, fields, skip_bad)}"
    start = time.perf_counter()
    try:
        return Index.open(path), time.perf_counter() - start, False
    except BadIndexError:
        pass
    source = {"name": name, "content_hash": content_hash}
    try:
        index = Index.build(docs(), path, analyzer=analyzer, fields=fields, overwrite=path.exists(),
                            progress=progress, source=source)
    except CascadeError:
        if not (path / "MANIFEST.json").exists():
            raise
        index = Index.open(path)  # another process published it first
    return index, time.perf_counter() - start, True
