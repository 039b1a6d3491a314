"""Durable file-system steps: fsync files and directories, atomic replace."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from cascade.core.errors import CascadeError
from cascade.core.paths import cache_root


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file under ``root``, then the directories, deepest first."""
    dirs = []
    for dirpath, _dirnames, filenames in os.walk(root):
        dirs.append(Path(dirpath))
        for name in filenames:
            fsync_file(Path(dirpath) / name)
    for d in reversed(dirs):
        fsync_dir(d)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so a reader sees either the old or the new file whole."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    """blake2b-128 hex digest of a file's bytes."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def buffer_digest(data: object, chunk: int = 1 << 24) -> str:
    """blake2b-128 hex digest of a bytes-like object (a memory map, ``bytes``), hashed in chunks."""
    h = hashlib.blake2b(digest_size=16)
    view = memoryview(data)  # type: ignore[arg-type]
    for start in range(0, len(view), chunk):
        h.update(view[start:start + chunk])
    return h.hexdigest()


# -- checksums already found ------------------------------------------------------------------
#
# A file's digest is remembered under its identity and change times (device, inode, size, mtime
# and ctime in ns): writing to the file, even in place through a memory map, changes its ctime,
# so a remembered digest is never trusted for changed bytes. File systems keep times in coarse
# ticks (up to a second or two), so a file changed less than RACY_SECONDS ago could change again
# within the same tick: its digest is not remembered (git's "racily clean" rule). Segment files
# never change once published, so a process hashes each one at most once however many
# snapshots open it. With ``across_processes`` a digest is also remembered on disk, under
# ``digests/`` in :func:`~cascade.core.paths.cache_root` (the same rule as git's index keeps
# for its stat data), so the next process that opens the index does not hash its files again:
# hashing a gigabyte of stored token vectors took longer than a neural eval's queries. What
# that trusts is that no byte changes without the file's times changing (bit rot on the disk
# does not change them); ``cascade check`` (:meth:`Index.verify`) re-hashes every file.

_DIGESTS: dict[tuple[int, int, int, int, int], str] = {}
_DIGESTS_LOCK = threading.Lock()
RACY_SECONDS = 2.0


def _identity(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _memo_file(key: tuple[int, int, int, int, int]) -> Path:
    name = hashlib.blake2b(":".join(map(str, key)).encode(), digest_size=16).hexdigest()
    return cache_root() / "digests" / name[:2] / name


def _read_memo(key: tuple[int, int, int, int, int]) -> str | None:
    try:
        text = _memo_file(key).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if len(text) == 32 and all(c in "0123456789abcdef" for c in text) else None


def _write_memo(key: tuple[int, int, int, int, int], digest: str) -> None:
    """Remember ``digest`` on disk (best effort: a read-only or full cache only costs a re-hash)."""
    path = _memo_file(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
        tmp.write_text(digest, encoding="ascii")
        os.replace(tmp, path)
    except OSError:
        pass


def remembered_digest(path: Path, chunk: int = 1 << 20, *, across_processes: bool = False) -> str:
    """:func:`file_digest` of ``path``, hashed once per process while the file is unchanged
    (with ``across_processes``, once per cache directory: see above)."""
    key = _identity(os.stat(path))
    with _DIGESTS_LOCK:
        found = _DIGESTS.get(key)
    if found is None and across_processes:
        found = _read_memo(key)
    if found is not None:
        return found
    digest = file_digest(path, chunk)
    after = os.stat(path)
    if _identity(after) == key and time.time() - after.st_ctime >= RACY_SECONDS:  # settled, unchanged
        with _DIGESTS_LOCK:
            _DIGESTS[key] = digest
        if across_processes:
            _write_memo(key, digest)
    return digest


def forget_digests() -> None:
    """Drop every digest this process remembers and those remembered on disk (the next check of
    each file re-hashes it)."""
    with _DIGESTS_LOCK:
        _DIGESTS.clear()
    shutil.rmtree(cache_root() / "digests", ignore_errors=True)


# -- errors of a full or read-only disk ---------------------------------------------------------

DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG})


def disk_error(err: OSError) -> bool:
    """Whether ``err`` says the disk is full or the place is read-only / not ours to write
    (numpy's short write, "N requested and M written", carries no errno: a full disk)."""
    return err.errno in DISK_ERRNOS or (err.errno is None and " written" in str(err))


class DiskError(CascadeError):
    """A full or read-only disk met while writing an index (what was published stays)."""


@contextmanager
def disk_errors(path: Path, intact: str = "the last commit is intact") -> Iterator[None]:
    """Turn a full or read-only disk met while writing ``path`` into one CascadeError line
    (``intact`` says what is left as it was); other OSErrors pass through."""
    try:
        yield
    except OSError as err:
        if not disk_error(err):
            raise
        where = err.filename or path
        raise DiskError(f"{path}: cannot write {where} ({err.strerror or err}): disk full / read-only; "
                        f"{intact}") from None


# -- temporary build directories and the debris of killed builds --------------------------------

STALE_STAGING = 600.0  # seconds after which an unclaimed staging directory is debris


def temp_dir_prefix(stem: str) -> str:
    """Name prefix of the temporary directories building ``stem`` beside it."""
    return f".{stem}.tmp-"


def claim_temp_dir(parent: Path, stem: str) -> tuple[Path, int]:
    """A new empty directory ``parent/.<stem>.tmp-<random>`` and a descriptor holding an
    exclusive ``flock`` on it (close it to release). The lock is taken while the directory
    still has a private name, so a directory with this name is never both live and unlocked:
    :func:`remove_dead_temp_dirs` can tell a killed build's debris from a running build."""
    token = uuid.uuid4().hex[:12]
    staging = parent / f".{stem}.new-{token}"
    staging.mkdir()
    fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody else knows this name
        tmp = parent / f"{temp_dir_prefix(stem)}{token}"
        os.rename(staging, tmp)
    except BaseException:
        os.close(fd)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return tmp, fd


def remove_dead_temp_dirs(parent: Path, stem: str, *, before: float | None = None) -> list[tuple[Path, int]]:
    """Remove the temporary directories of builds of ``parent/<stem>`` that no running process
    holds (killed builds), with ``before`` only those last changed before that time; returns
    (path, bytes) of each one removed. Errors (a read-only parent, a race with another
    cleaner) are skipped: this is tidying, never a reason to fail."""
    prefix, staging = temp_dir_prefix(stem), f".{stem}.new-"
    removed: list[tuple[Path, int]] = []
    try:
        candidates = [p for p in parent.iterdir() if p.name.startswith((prefix, staging))]
    except OSError:
        return removed
    now = time.time()
    for candidate in candidates:
        try:
            fd = os.open(candidate, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a running build holds it
            here, held = os.stat(candidate, follow_symlinks=False), os.fstat(fd)
            if (here.st_ino, here.st_dev) != (held.st_ino, held.st_dev):
                continue  # renamed meanwhile (published): not debris
            changed = here.st_mtime
            if before is not None and changed >= before:
                continue
            if candidate.name.startswith(staging) and now - changed < STALE_STAGING:
                continue  # perhaps just made, not yet claimed
            size = tree_size(candidate)
            shutil.rmtree(candidate)
            removed.append((candidate, size))
        except OSError:
            continue
        finally:
            os.close(fd)
    return removed


def tree_size(root: Path) -> int:
    """Bytes of the files under ``root`` (or of ``root`` itself when it is a file)."""
    if not root.is_dir():
        return root.stat().st_size
    total = 0
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def unwritable(directory: Path) -> OSError | None:
    """Why nothing can be written into ``directory`` (a read-only file system, no permission,
    a full disk), found by making and removing an empty ``.tmp-probe-*`` directory; None
    when it is writable. Other errors propagate."""
    try:
        probe = tempfile.mkdtemp(prefix=".tmp-probe-", dir=directory)
    except OSError as err:
        if disk_error(err):
            return err
        raise
    os.rmdir(probe)
    return None
