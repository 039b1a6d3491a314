"""Session-level evaluation: sDCG and NUM against a hand-computed example written from the
papers' definitions, their properties, the session file, and `cascade eval --sessions` on a
small session collection built from TREC DL19 queries."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cascade.cli import app
from cascade.core.errors import CascadeError
from cascade.data import read_trec_run
from cascade.data.beir import BeirDataset
from cascade.evaluation.sessions import evaluate_sessions, num, read_sessions, session_labels

runner = CliRunner()

QRELS = {
    "q1": {"A": 2, "B": 0, "C": 1},
    "q2": {"C": 1, "D": 2, "E": 1},
    "q3": {"A": 2, "F": 1},
    "q4": {"Z": 0},
}
RUN = {  # scores give the order: q1 ranks B, A, X
    "q1": {"B": 3.0, "A": 2.0, "X": 1.0},
    "q2": {"A": 3.0, "D": 2.0, "C": 1.0},
    "q3": {"F": 3.0, "Y": 2.0, "A": 1.0},
    "q4": {"Z": 1.0},
}
SESSIONS = {"s1": ["q1", "q2"], "s2": ["q3"], "s3": ["q4"]}


def test_hand_computed_example() -> None:
    """k = 3; sDCG with b = 2 (rank r discounted by log2(r + 1)), bq = 4 (query j by 1 + log4 j);
    NUM with patience L = 10 positions and one position per query issued."""
    e = evaluate_sessions(RUN, QRELS, SESSIONS, k=3, patience=10, reform_cost=1)
    assert e.left_out == ["s3"]  # nothing relevant: no ideal to normalise by
    s1, s2 = e.per_session["s1"], e.per_session["s2"]
    # s1, sDCG. q1: B=0, A=2, X=unjudged -> 2/log2(3). q2 (its own qrels): A=0, D=2, C=1 -> 2/log2(3) + 1/log2(4);
    # second query discounted by 1 + log4(2) = 1.5
    q1, q2 = 2 / math.log2(3), 2 / math.log2(3) + 1 / 2
    assert s1["sDCG@3"] == pytest.approx(q1 + q2 / 1.5)
    # ideal rankings: q1 [A=2, C=1], q2 [D=2, C=1, E=1]
    ideal = (2 + 1 / math.log2(3)) + (2 + 1 / math.log2(3) + 1 / 2) / 1.5
    assert s1["nsDCG@3"] == pytest.approx((q1 + q2 / 1.5) / ideal)
    # s1, NUM. Session labels (max over q1, q2): A=2, B=0, C=1, D=2, E=1. Trailtext positions:
    # q1 issued (1), B (2, gain 0), A (3, gain 2), X (4, 0); q2 issued (5), A (6, already read: 0),
    # D (7, gain 2), C (8, gain 1). U = 2(1 - 3/10) + 2(1 - 7/10) + 1(1 - 8/10) = 1.4 + 0.6 + 0.2 = 2.2
    # Ideal: one query (1), then A, D, C, E at 2..5: 2(.8) + 2(.7) + 1(.6) + 1(.5) = 4.1
    assert s1["NUM@3"] == pytest.approx(2.2 / 4.1)
    # s2: q3 F=1, Y=0, A=2 -> sDCG = 1 + 2/log2(4) = 2; ideal [A, F] = 2 + 1/log2(3)
    assert s2["sDCG@3"] == pytest.approx(2.0)
    assert s2["nsDCG@3"] == pytest.approx(2.0 / (2 + 1 / math.log2(3)))
    # NUM: issued (1), F (2, gain 1), Y (3), A (4, gain 2): 1(.8) + 2(.6) = 2.0; ideal A (2), F (3): 1.6 + .7 = 2.3
    assert s2["NUM@3"] == pytest.approx(2.0 / 2.3)
    assert e.mean["NUM@3"] == pytest.approx((2.2 / 4.1 + 2.0 / 2.3) / 2)


def test_session_labels_take_the_best_label_of_any_query() -> None:
    assert session_labels(["q1", "q2"], QRELS) == {"A": 2, "B": 0, "C": 1, "D": 2, "E": 1}


def test_num_is_one_for_the_ideal_session_and_at_most_one_otherwise() -> None:
    rng = random.Random(7)
    for _ in range(300):
        docs = [f"d{i}" for i in range(12)]
        labels = {d: rng.choice([0, 0, 1, 2, 3]) for d in rng.sample(docs, 8)}
        lists = [rng.sample(docs, rng.randint(0, 6)) for _ in range(rng.randint(1, 4))]
        value = num(lists, labels, patience=rng.choice([5, 20, 50]), reform_cost=rng.choice([0, 1, 2]))
        relevant = sorted((d for d, g in labels.items() if g > 0), key=lambda d: -labels[d])
        if not relevant:
            assert value is None
            continue
        assert 0.0 <= value <= 1.0 + 1e-12
        assert num([relevant], labels, 50, 1) == pytest.approx(1.0)


def test_num_rewards_finding_the_relevant_documents_with_fewer_queries() -> None:
    """Assumption A1: the same documents found by the first query are worth more than found after a
    reformulation; sDCG agrees (its query discount)."""
    qrels = {"a": {"d1": 1, "d2": 1}, "b": {"d1": 1, "d2": 1}}
    early = {"a": {"d1": 2.0, "d2": 1.0}, "b": {"x": 1.0}}
    late = {"a": {"x": 1.0}, "b": {"d1": 2.0, "d2": 1.0}}
    sessions = {"s": ["a", "b"]}
    good, bad = (evaluate_sessions(r, qrels, sessions, k=2).per_session["s"] for r in (early, late))
    assert good["NUM@2"] > bad["NUM@2"] and good["sDCG@2"] > bad["sDCG@2"]


def test_session_file_format_and_errors(tmp_path: Path) -> None:
    f = tmp_path / "sessions.txt"
    f.write_text("# session query\ns1 q1\n\ns2\tq3\ns1  q2\n")
    assert read_sessions(f) == {"s1": ["q1", "q2"], "s2": ["q3"]}
    with pytest.raises(CascadeError, match="is not a judged query"):
        read_sessions(f, known=["q1", "q2"])
    f.write_text("s1 q1 extra\n")
    with pytest.raises(CascadeError, match=r"sessions.txt:1: expected 'SESSION_ID QUERY_ID'"):
        read_sessions(f)
    f.write_text("# nothing\n")
    with pytest.raises(CascadeError, match="no sessions"):
        read_sessions(f)
    with pytest.raises(CascadeError, match="--sessions"):
        read_sessions(tmp_path / "missing.txt")


# -- a session collection from DL19 queries ---------------------------------------------------


def _dl19_sessions(datasets_dir: Path, tmp_path: Path) -> tuple[Path, Path, dict[str, list[str]]]:
    """Sessions of 3 consecutive judged DL19 queries (file order), the first 15 of them: five
    "users" reformulating. Written to tmp_path; the dataset itself is only read."""
    data = datasets_dir / "trec-dl19-passage-pool"
    ds = BeirDataset(data)
    judged = ds.qrels("test")
    ids = [q.id for q in ds.queries() if q.id in judged][:15]
    sessions = {f"user{i // 3}": ids[i:i + 3] for i in range(0, 15, 3)}
    f = tmp_path / "dl19.sessions"
    f.write_text("".join(f"{s} {q}\n" for s, qs in sessions.items() for q in qs))
    return data, f, sessions


def test_cascade_eval_sessions_on_dl19(datasets_dir: Path, tmp_path: Path) -> None:
    data, f, sessions = _dl19_sessions(datasets_dir, tmp_path)
    run_file = tmp_path / "bm25.run"
    result = runner.invoke(app, ["eval", str(data), "-p", "bm25 % 100", "--metrics", "nDCG@10", "--json",
                                 "--sessions", str(f), "--save-run", str(run_file)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["sessions"] == 5
    got = out["results"][0]["sessions"]
    expected = evaluate_sessions(read_trec_run(run_file), BeirDataset(data).qrels("test"), sessions, k=10).mean
    assert got == pytest.approx(expected)
    assert 0 < got["NUM@10"] < 1 and 0 < got["nsDCG@10"] < 1 and got["sDCG@10"] > 0
    assert 0 < out["results"][0]["judged"]["judged@10"] <= 1
    table = runner.invoke(app, ["eval", str(data), "-p", "bm25 % 100", "--metrics", "nDCG@10", "--sessions", str(f)])
    assert table.exit_code == 0 and "NUM@10" in table.stdout and "sessions: 5 evaluated" in table.stdout


def test_cascade_eval_sessions_with_an_unknown_query_is_one_line(datasets_dir: Path, tmp_path: Path) -> None:
    f = tmp_path / "bad.sessions"
    f.write_text("s1 19335\ns1 no-such-query\n")
    result = runner.invoke(app, ["eval", str(datasets_dir / "trec-dl19-passage-pool"), "--sessions", str(f)])
    assert result.exit_code == 1
    assert "not judged queries" in result.output and "no-such-query" in result.output
    assert "Traceback" not in result.output
