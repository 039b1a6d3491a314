"""Four reader processes open, search and refresh while a writer process adds, updates, deletes
and merges: no reader ever gets an error, and every answer equals a fresh build of the live
documents of the generation it came from (scores bit for bit, stored texts exactly). The engine
is bench/concurrency.py; the default suite runs 10 s, ``-m slow`` 60 s."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "concurrency.py"


def _run(tmp_path: Path, seconds: float) -> dict:
    spec = importlib.util.spec_from_file_location("bench_concurrency", SCRIPT)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    result = module.run(tmp_path, seconds, readers=4)
    print("concurrency:", {k: v for k, v in result.items() if k not in ("errors", "differences")})
    assert result["errors"] == [] and result["differences"] == []
    counts = result["reader_counts"]
    # enough work to mean something even on a loaded machine (counts scale with CPU time, not seconds)
    assert counts["searches"] >= 40 and counts["opens"] >= 8 and counts["refreshes"] >= 8, counts
    assert result["commits"] >= 8 and result["generations_checked"] >= 4, result
    assert result["writer_ops"].get("merge (all)", 0) + result["writer_ops"].get("merge (policy)", 0) > 0
    return result


def test_readers_and_a_writer_at_once_for_10_seconds(tmp_path: Path) -> None:
    _run(tmp_path, 10)


@pytest.mark.slow
def test_readers_and_a_writer_at_once_for_60_seconds(tmp_path: Path) -> None:
    _run(tmp_path, 60)
