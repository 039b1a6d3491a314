"""Hooks run on every new segment before it is published.

``AFTER_SEGMENT_WRITTEN`` holds callables ``hook(segment_dir, docs) -> list[str]``, called
once a segment's postings and docstore are written (by a build, an add/update, or a merge)
and before the segment is fsync'd and listed in a manifest. ``docs`` iterates the segment's
documents in doc-number order (read back from its docstore, so a build never holds the
corpus in memory). A hook writes its files into ``segment_dir`` (e.g. neural
representations ``rep-<name>.<part>.npy``, row-aligned with the doc numbers) and returns
their names; they are checksummed and listed in the segment's ``files`` like every other.
A hook that raises aborts the commit and leaves the index as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

from cascade.core.types import Doc

SegmentHook = Callable[[Path, Iterable[Doc]], list[str]]
AFTER_SEGMENT_WRITTEN: list[SegmentHook] = []


def run_segment_hooks(segment_dir: Path, docs: Iterable[Doc]) -> list[str]:
    """Run every registered hook; returns the names of the files they wrote."""
    written: list[str] = []
    for hook in AFTER_SEGMENT_WRITTEN:
        written += list(hook(segment_dir, docs) or [])
    return written
