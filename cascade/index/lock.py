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

PYTHON_HINT = "wait for it to finish, or pass wait=SECONDS"


class WriterBusy(CascadeError):
    """Another writer (process or thread) holds the index's write lock. The message ends with
    what to do, in the caller's terms: Python's ``wait=SECONDS`` by default; the CLI rewords it
    with :meth:`worded` (``--wait SECONDS``)."""

    def __init__(self, path: Path, hint: str = PYTHON_HINT) -> None:
        self.path = path
        super().__init__(f"{path}: another writer is updating this index (its write lock is held); {hint}")

    def worded(self, hint: str) -> "WriterBusy":
        """The same error ending with ``hint`` instead."""
        return WriterBusy(self.path, hint)


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
                    raise WriterBusy(path) from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)  # releases the lock
