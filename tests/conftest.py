"""Shared fixtures: the read-only datasets and an isolated index cache."""

from __future__ import annotations

from pathlib import Path

import pytest

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own CASCADE_CACHE_DIR, so nothing touches ~/.cache."""
    cache = tmp_path_factory.mktemp("cascade-cache")
    monkeypatch.setenv("CASCADE_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def cache_dir(_isolated_cache: Path) -> Path:
    """The CASCADE_CACHE_DIR of this test."""
    return _isolated_cache


@pytest.fixture
def datasets_dir() -> Path:
    """The shared datasets directory; skips the test when it is not there."""
    if not DATASETS.is_dir():
        pytest.skip(f"shared datasets not found at {DATASETS}")
    return DATASETS

