"""End to end on the shared datasets: `cascade eval` against published / bm25s figures.

Skipped when ../shared/datasets is absent. Each run uses the per-test cache dir from conftest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cascade.data import BeirDataset
from cascade.index.index import Index
from cascade.retrieve.bm25 import BM25


def require(datasets_dir: Path, name: str) -> Path:
    path = datasets_dir / name
    if not (path / "corpus.jsonl").is_file():
        pytest.skip(f"dataset {name} not found at {path}")
    return path


def cascade_cmd() -> list[str]:
    script = Path(sys.executable).with_name("cascade")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cascade.cli"]


def cascade(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cascade_cmd(), *map(str, args)], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env=dict(os.environ))


def eval_json(*args: object, cwd: Path | None = None) -> dict:
    proc = cascade("eval", *args, "--json", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0])


def test_scifact_bm25(datasets_dir: Path) -> None:
    report = eval_json(require(datasets_dir, "scifact"))
    assert report["dataset"] == "scifact"
    assert report["queries"] == 300
    [res] = report["results"]
    assert res["pipeline"] == "bm25"
    # bm25s 0.6762, Anserini BM25 flat 0.6789
    assert res["metrics"]["nDCG@10"] >= 0.672
    assert res["metrics"]["R@100"] > 0.85


@pytest.mark.parametrize("name,bm25s_ndcg10,extra", [
    ("vaswani", 0.4449, ()),
    ("cranfield", 0.3517, ("--skip-bad",)),  # two documents are empty
    ("adi", 0.4802, ()),
    ("nfcorpus-preprocessed", 0.3279, ()),
])
def test_bm25_matches_bm25s(datasets_dir: Path, name: str, bm25s_ndcg10: float, extra: tuple[str, ...]) -> None:
    report = eval_json(require(datasets_dir, name), *extra)
    [res] = report["results"]
    assert res["metrics"]["nDCG@10"] == pytest.approx(bm25s_ndcg10, abs=0.01)
    if name == "cranfield":
        assert report["skipped"] == 2


def test_cranfield_without_skip_bad_is_a_user_error(datasets_dir: Path) -> None:
    proc = cascade("eval", require(datasets_dir, "cranfield"), "--json")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert lines[0].startswith("error: ") and "corpus.jsonl:" in lines[0] and "empty" in lines[0]
    assert "--skip-bad" in lines[0]


def test_dl19_stored_bm25_run(datasets_dir: Path, tmp_path: Path) -> None:
    dl19 = require(datasets_dir, "trec-dl19-passage-pool")
    if not (dl19 / "runs" / "BM25.top100.trec").is_file():
        pytest.skip("DL19 BM25 run not present")
    # run from elsewhere: the run path is resolved against the dataset directory
    report = eval_json(dl19, "--run", "runs/BM25.top100.trec", cwd=tmp_path)
    assert report["queries"] == 43
    [res] = report["results"]
    assert res["pipeline"] == "run(runs/BM25.top100.trec)"
    assert round(res["metrics"]["nDCG@10"], 4) == 0.5058  # published: .5058


def test_index_build_scifact(datasets_dir: Path, tmp_path: Path) -> None:
    """Indexing speed is measured by bench/sparse.py (docs/s against bm25s), not here."""
    dataset = BeirDataset(require(datasets_dir, "scifact"))
    index = Index.build(dataset.corpus(), tmp_path / "scifact.idx")
    assert index.n_docs == 5183
    assert index.verify() == []
    hits = BM25(index).search("0-dimensional biomaterials show inductive properties", k=10)
    assert len(hits) == 10 and hits[0].score >= hits[-1].score > 0
