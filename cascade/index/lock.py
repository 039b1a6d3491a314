"""One writer per index: an exclusive ``flock`` on the index directory itself.

The lock lives as long as the file descriptor, so a writer that dies (even by SIGKILL)
releases it at once; no lock file is left behind and none needs cleaning up. Readers never
take it.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from cascade.core.errors import BadIndexError, CascadeError


class WriterBusy(CascadeError):
    """Another writer (process or thread) holds the index's write lock."""


@contextmanager
def writer_lock(path: Path, wait: float = 0.0) -> Iterator[None]:
    """Hold the index's write lock; wait up to ``wait`` seconds for another writer to finish."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        raise BadIndexError(f"{path}: no such index directory") from None
    except NotADirectoryError:
        raise BadIndexError(f"{path}: not a Cascade index (not a directory)") from None
    try:
        deadline = time.monotonic() + max(wait, 0.0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise WriterBusy(f"{path}: another writer is updating this index (its write lock is held); "
                                     "wait for it to finish, or pass wait=SECONDS") from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)  # releases the lock
