"""Schemathesis against the server's own OpenAPI schema: no 5xx, no answer outside the schema,
for cases generated for every operation (a short run by default, a long one with -m slow)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from server_util import KEY, build_index, start_server

pytest.importorskip("schemathesis")
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def run_schemathesis(tmp_path: Path, max_examples: int, phases: str = "examples,coverage,fuzzing") -> str:
    srv = start_server(build_index(tmp_path / "s.idx", 40), tmp_path / "log",
                       limits={"max_k": 100, "max_batch": 10, "timeout_s": 20})
    try:
        cmd = [sys.executable, "-m", "schemathesis.cli", "run", f"{srv.url}/openapi.json", "--checks", CHECKS,
               "--max-examples", str(max_examples), "--header", f"Authorization: Bearer {KEY}",
               "--phases", phases, "--seed", "7", "--request-timeout", "30"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    finally:
        srv.stop()
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    assert "Traceback" not in srv.log.read_text()
    return out


def test_schemathesis_short_run(tmp_path: Path) -> None:
    out = run_schemathesis(tmp_path, 15, "examples,fuzzing")  # coverage phase: in the slow run
    assert re.search(r"\b1[01] passed|\b\d+ passed", out), out[-3000:]


@pytest.mark.slow
def test_schemathesis_full_run(tmp_path: Path) -> None:
    out = run_schemathesis(tmp_path, 300)
    print(out[-3000:])
