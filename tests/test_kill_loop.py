"""SIGKILL the writer at random moments during add / update / delete / merge, and on an encoded
index during encode and optimize too, many times: after every kill the index opens, passes
`cascade check` and holds exactly the last committed state, every stored representation holds
its documents' vectors, and files a killed writer left are gone after the next commit or
`cascade check --repair` (the engine is bench/kill_loop.py; CASCADE_KILLS sets the count of the
plain loop, default 200, CASCADE_NEURAL_KILLS that of the encoded one, default 80)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "kill_loop.py"
needs_fork = pytest.mark.skipif(sys.platform == "win32" or not hasattr(os, "fork"), reason="needs fork and SIGKILL")


def _module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_kill_loop", SCRIPT)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.mark.slow
@needs_fork
def test_kill_loop_loses_and_corrupts_nothing(tmp_path: Path) -> None:
    kills = int(os.environ.get("CASCADE_KILLS", "200"))
    result = _module().kill_loop(tmp_path, kills, seed=1, max_delay=0.3)
    print("kill loop:", result)
    assert result["kills"] == kills
    for kind in ("add", "delete", "merge"):
        assert result["in_flight"].get(kind, 0) >= kills // 20, result
    assert result["outcomes"].get("last reported commit", 0) > 0
    assert result["orphans"]["left after the next commit"] == result["orphans"]["left after check --repair"] == 0


@pytest.mark.slow
@needs_fork
def test_kill_loop_on_an_encoded_index_during_encode_and_optimize(tmp_path: Path) -> None:
    pytest.importorskip("sentence_transformers")
    module = _module()
    model = module.tiny_model(tmp_path / "tiny")
    work = tmp_path / "work"
    work.mkdir()
    kills = int(os.environ.get("CASCADE_NEURAL_KILLS", "80"))
    result = module.kill_loop(work, kills, seed=4, max_delay=0.3, model=model)
    print("kill loop (encoded):", result)
    assert result["kills"] == kills
    for kind in ("add", "encode", "merge"):
        assert result["in_flight"].get(kind, 0) >= kills // 40, result
    assert result["representations"]["segments checked"] > kills
    assert result["orphans"]["after a kill"] > 0  # kills did leave files behind ...
    assert result["orphans"]["left after the next commit"] == result["orphans"]["left after check --repair"] == 0
