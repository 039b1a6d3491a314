"""Progress shown in logs: plain lines with counts, totals, rate and time left, at a bounded pace."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cascade.core import progress as progress_module
from cascade.core.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", fake)
    return fake


def test_plain_lines_every_interval_after_the_first_seconds(clock: Clock) -> None:
    out = io.StringIO()
    with Progress("encoding documents", total=1000, unit="docs", stream=out) as bar:
        for done in range(0, 1001, 10):  # 100 updates, 0.5 s apart: 50 s of work
            bar.update(done)
            clock.now += 0.5
    lines = out.getvalue().splitlines()
    assert 5 <= len(lines) <= 7  # after 2 s, then every 10 s, then the end
    assert lines[0].startswith("encoding documents: ") and "/1,000 docs (" in lines[0] and "left" in lines[0]
    assert lines[-1].startswith("encoding documents: 1,000/1,000 docs (100%)") and "elapsed" in lines[-1]
    assert "docs/s" in lines[-1]


def test_short_work_prints_nothing_and_a_failure_prints_no_last_line(clock: Clock) -> None:
    out = io.StringIO()
    with Progress("indexing", total=3, stream=out) as bar:
        bar.update(3)
    assert out.getvalue() == ""
    with pytest.raises(RuntimeError), Progress("indexing", stream=out) as bar:
        clock.now += 5
        bar.update(7)
        raise RuntimeError("boom")
    assert out.getvalue().splitlines() == ["indexing: 7, 1.4/s, 5s elapsed"]


def test_phases_without_a_total(clock: Clock) -> None:
    out = io.StringIO()
    with Progress("reading scifact", stream=out) as bar:
        clock.now += 3
        bar.relabel("indexing scifact", 5183)
        bar.update(100)
        clock.now += 11
        bar.update(5183)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("indexing scifact: 100/5,183 (2%)")
    assert lines[-1].startswith("indexing scifact: 5,183/5,183 (100%)")


def test_interval_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(progress_module.INTERVAL_ENV, "3")
    assert Progress("x", stream=io.StringIO()).interval == 3.0
    monkeypatch.setenv(progress_module.INTERVAL_ENV, "soon")
    assert Progress("x", stream=io.StringIO()).interval == progress_module.INTERVAL


def test_cli_commands_log_plain_progress_lines(tmp_path: Path) -> None:
    """A real `cascade` process with stderr in a log file writes plain progress lines (no bar, no escapes)."""
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": f"d{i}", "text": f"document number {i} about topic {i % 7}"}) + "\n"
                              for i in range(500)), encoding="utf-8")
    (tmp_path / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": f"topic {i}"}) + "\n"
                                                    for i in range(7)), encoding="utf-8")
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"q{i}\td{i}\t1\n" for i in range(7)), encoding="utf-8")
    env = {**os.environ, progress_module.INTERVAL_ENV: "0"}
    commands = {
        "indexing corpus.jsonl": ["index", str(corpus), "-o", str(tmp_path / "docs.idx")],
        "adding corpus.jsonl": ["add", str(tmp_path / "docs.idx"), str(corpus), "--update"],
        "running bm25": ["eval", str(tmp_path)],
    }
    for label, args in commands.items():
        log = tmp_path / "stderr.log"
        with log.open("w") as stderr:
            proc = subprocess.run([sys.executable, "-m", "cascade.cli", *args], stdout=subprocess.DEVNULL,
                                  stderr=stderr, timeout=120, env=env)
        text = log.read_text(encoding="utf-8")
        assert proc.returncode == 0, text
        assert "\x1b" not in text and "\r" not in text  # plain lines, not a terminal bar
        lines = [line for line in text.splitlines() if line.startswith(label)]
        assert lines, (label, text)
        assert any("elapsed" in line for line in lines), text
