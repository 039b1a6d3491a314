"""What no commit lists: the debris of killed or failed writes inside an index directory.

A writer puts new files into an index before the commit that lists them (a segment built in
``.tmp-*``, tombstones, representation files and their ``.tmp`` files); when it is killed or
fails (a full disk) before committing, they stay unlisted. The next commit removes them at its
start and end, ``cascade check`` reports them and ``cascade check --repair`` removes them.
Only the writer may remove them (under the write lock): a live writer's files are unlisted
until it commits.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from cascade.index.fsutil import tree_size
from cascade.index.manifest import MANIFEST_NAME, Manifest


def find_debris(path: Path, manifest: Manifest | None = None) -> list[Path]:
    """Everything in the index directory ``path`` that ``manifest`` (default: the current one)
    does not list and a commit leaves behind: directories ``seg-*`` it does not list, ``.tmp-*``
    build directories, temporary manifests, and in each listed segment every file it does not
    list for it (old tombstones, representation files and their temporary files) and its
    hidden temporary directories. Nothing else (files a user put there) counts."""
    manifest = manifest if manifest is not None else Manifest.read(path)
    live = {s.name: s for s in manifest.segments}
    found: list[Path] = []
    for child in sorted(path.iterdir()):
        if child.is_dir() and child.name not in live and child.name.startswith(("seg-", ".tmp-")):
            found.append(child)
        elif not child.is_dir() and child.name.startswith(f".{MANIFEST_NAME}.tmp"):
            found.append(child)
    for name, entry in live.items():
        seg_dir = path / name
        if not seg_dir.is_dir():
            continue
        for child in sorted(seg_dir.iterdir()):
            if child.name in entry.files:
                continue
            if not child.is_dir() or child.name.startswith("."):
                found.append(child)
    return found


def remove_debris(path: Path) -> list[tuple[Path, int]]:
    """Remove :func:`find_debris`'s findings from ``path``; returns (path, bytes) of each thing
    removed. Needs the write lock. Tidying never fails: what cannot be removed is skipped."""
    removed: list[tuple[Path, int]] = []
    for child in find_debris(path):
        try:
            size = tree_size(child)
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        except OSError:
            continue  # gone already, or not ours to remove
        removed.append((child, size))
    return removed
