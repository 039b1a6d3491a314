"""The README's Python examples run as written (from the repository root)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_blocks_run(datasets_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    code = "\n".join(re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S))
    assert "cascade.Index.build" in code
    code = code.replace("/tmp/", f"{tmp_path}/")
    monkeypatch.chdir(ROOT)  # the examples use ../shared/datasets relative to the repository
    exec(compile(code, "README.md", "exec"), {})
