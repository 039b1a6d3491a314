"""A cache of indexes built for evaluation, keyed by corpus content and analysis settings."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from cascade.core.errors import BadIndexError, CascadeError
from cascade.core.paths import cache_root
from cascade.core.types import Doc
from cascade.index.fsutil import disk_errors
from cascade.index.index import Index, _replace_index, build_index
from cascade.index.lock import writer_lock
from cascade.index.manifest import FORMAT_VERSION, MANIFEST_NAME
from cascade.text.analyzer import Analyzer

BUILD_WAIT = 6 * 3600.0  # seconds to wait for another process building the same entry


def index_cache_key(content_hash: str, analyzer: Analyzer, fields: Sequence[str], skip_bad: bool) -> str:
    spec = {"content": content_hash, "analyzer": analyzer.to_dict(), "fields": list(fields),
            "skip_bad": skip_bad, "format": FORMAT_VERSION}
    return hashlib.blake2b(json.dumps(spec, sort_keys=True).encode(), digest_size=10).hexdigest()


def cached_index(name: str, content_hash: str, docs: Callable[[], Iterable[Doc]], *,
                 analyzer: Analyzer, fields: Sequence[str] = ("title", "text"), skip_bad: bool = False,
                 progress: Callable[[int], None] | None = None) -> tuple[Index, float, bool]:
    """Open the cached index for this corpus and settings, building it first if needed.

    Returns (index, seconds spent, whether it was built now). Processes wanting the same
    entry at once are safe: builders of one entry take turns (a lock file beside it), so one
    builds and the others open what it published; a damaged entry is rebuilt in place.
    """
    path = cache_root() / "indexes" / f"{name}-{index_cache_key(content_hash, analyzer, fields, skip_bad)}"
    start = time.perf_counter()
    try:
        return Index.open(path), time.perf_counter() - start, False
    except BadIndexError:
        pass
    source = {"name": name, "content_hash": content_hash}
    path.parent.mkdir(parents=True, exist_ok=True)
    with _builder_turn(path):
        try:  # published by another process while this one waited
            return Index.open(path), time.perf_counter() - start, False
        except BadIndexError:
            pass
        if (path / MANIFEST_NAME).exists():  # a damaged entry: rebuild it as one commit
            with disk_errors(path), writer_lock(path, wait=BUILD_WAIT):
                _replace_index(docs(), path, analyzer, list(fields), {}, progress, source)
        else:
            try:
                build_index(docs(), path, analyzer=analyzer, fields=list(fields), filter_fields={},
                            overwrite=False, progress=progress, source=source)
            except CascadeError:
                if not (path / MANIFEST_NAME).exists():
                    raise
                # published by a builder that does not take turns (an older Cascade): use it
        return Index.open(path), time.perf_counter() - start, True


@contextmanager
def _builder_turn(path: Path) -> Iterator[None]:
    """Hold the lock file ``.<entry>.lock`` beside the cache entry ``path`` (waiting for another
    builder up to :data:`BUILD_WAIT` seconds); the kernel releases it when a builder dies."""
    lock = path.parent / f".{path.name}.lock"
    with disk_errors(path, "nothing was published"):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + BUILD_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise CascadeError(f"{path}: another process has been building this cached index for "
                                       f"{BUILD_WAIT / 3600:.0f} hours; if none is, remove {lock}") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)
