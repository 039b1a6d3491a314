"""SIGKILL the writer at random moments during add / update / delete / merge, many times:
after every kill the index opens, passes `cascade check` and holds exactly the last committed
state (the engine is bench/kill_loop.py; CASCADE_KILLS sets the count, default 200)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "kill_loop.py"


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32" or not hasattr(os, "fork"), reason="needs fork and SIGKILL")
def test_kill_loop_loses_and_corrupts_nothing(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_kill_loop", SCRIPT)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    kills = int(os.environ.get("CASCADE_KILLS", "200"))
    result = module.kill_loop(tmp_path, kills, seed=1, max_delay=0.3)
    print("kill loop:", result)
    assert result["kills"] == kills
    for kind in ("add", "delete", "merge"):
        assert result["in_flight"].get(kind, 0) >= kills // 20, result
    assert result["outcomes"].get("last reported commit", 0) > 0
