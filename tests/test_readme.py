"""The README's Python examples run as written (from the repository root)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def runnable(block: str) -> bool:
    """A block runs unless its ``# needs: a, b`` line names a module that is not installed."""
    needs = re.match(r"# needs: (.*)\n", block)
    return needs is None or all(importlib.util.find_spec(m.strip()) is not None for m in needs.group(1).split(","))


def test_readme_python_blocks_run(datasets_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    code = "\n".join(block for block in blocks if runnable(block))
    assert "cascade.Index.build" in code
    code = code.replace("/tmp/", f"{tmp_path}/")
    monkeypatch.chdir(ROOT)  # the examples use ../shared/datasets relative to the repository
    exec(compile(code, "README.md", "exec"), {})
