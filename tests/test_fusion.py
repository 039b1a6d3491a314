"""Fusion: RRF, CombSUM and CombMNZ against ranx on the DL19 runs; linear and union by hand."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from cascade.core.candidates import Candidates, IdTable
from cascade.core.executor import Executor
from cascade.core.types import Query
from cascade.data.readers import read_jsonl_queries
from cascade.data.trec import read_trec_run
from cascade.pipeline.function import stage
from cascade.pipeline.parse import parse

BM25 = "runs/BM25.top100.trec"
SPLADE = "runs/SPLADE_P_P_ENSEMBLE_DISTIL.top100.trec"


# -- DL19 fixtures --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def _dl19_state() -> dict:
    return {}


@pytest.fixture
def dl19(datasets_dir: Path, _dl19_state: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The dataset dir, its queries, and the runs loaded into ranx once per module."""
    root = datasets_dir / "trec-dl19-passage-pool"
    if not (root / BM25).is_file() or not (root / SPLADE).is_file():
        pytest.skip(f"DL19 runs not found under {root}")
    if not _dl19_state:
        ranx = pytest.importorskip("ranx")
        tmp = tmp_path_factory.mktemp("dl19")
        _dl19_state.update(
            root=root,
            queries=read_jsonl_queries(root / "queries.jsonl"),
            ranx=ranx,
            runs=[ranx.Run.from_file(str(root / f), kind="trec") for f in (BM25, SPLADE)],
            untied=[ranx.Run.from_file(str(_untie(root / f, tmp)), kind="trec") for f in (BM25, SPLADE)],
        )
    return _dl19_state


def _ranked(path: Path) -> dict[str, list[tuple[str, float]]]:
    """Each query's results in the order cascade's RunStage ranks them: score desc, doc id asc."""
    return {q: sorted(docs.items(), key=lambda item: (-item[1], item[0])) for q, docs in read_trec_run(path).items()}


def _untie(path: Path, out_dir: Path) -> Path:
    """The same run with every query's tied scores made distinct, keeping the (score desc, doc id asc) order.

    ranx sorts each query's results with numba's ``np.argsort`` (quicksort, not stable), so it
    orders documents with equal scores arbitrarily; cascade's RunStage ranks them by doc id.
    Ranks feed RRF, so the comparison is fair only on input without ties. Scores become
    ``1000 - rank``: RRF reads only ranks.
    """
    out = out_dir / path.name
    with open(out, "w") as f:
        for q, ranked in _ranked(path).items():
            for rank, (doc, _) in enumerate(ranked, 1):
                f.write(f"{q} Q0 {doc} {rank} {1000 - rank} untied\n")
    return out


def _count_ties(path: Path) -> int:
    return sum(len(docs) - len(set(docs.values())) for docs in read_trec_run(path).values())


def _cascade(text: str, dl19: dict, root: Path | None = None) -> dict[str, dict[str, float]]:
    p = parse(text, root=root or dl19["root"])
    out = Executor().run(p.compile(), dl19["queries"])
    # cascade's own order: scores never increase within a query
    for _, _, score in out.per_query():
        assert np.all(np.diff(score) <= 0)
    return out.to_run()


def _order(scores: dict[str, float]) -> list[str]:
    return [d for d, _ in sorted(scores.items(), key=lambda item: (-item[1], item[0]))]


def assert_same_fusion(ours: dict[str, dict[str, float]], ranx_run, tol: float) -> None:  # noqa: ANN001
    theirs = ranx_run.to_dict()
    assert set(theirs) and set(ours) == set(theirs)
    for q, their_scores in theirs.items():
        our_scores = ours[q]
        assert set(our_scores) == set(their_scores), q
        worst = max(abs(our_scores[d] - s) for d, s in their_scores.items())
        assert worst <= tol, (q, worst)
        # the same ranking, both sorted by (score desc, doc id asc); cascade keeps float32
        # scores, so rank ranx's at the same precision
        their32 = {d: float(np.float32(s)) for d, s in their_scores.items()}
        assert _order(our_scores) == _order(their32), q


def test_runs_have_ties_that_ranx_orders_arbitrarily(dl19: dict) -> None:
    """Why the RRF comparison unties its input: the SPLADE run has tied scores."""
    assert _count_ties(dl19["root"] / SPLADE) > 0
    assert _count_ties(dl19["root"] / BM25) == 0
    # cascade ranks ties by doc id, whether or not they are untied first
    orig = _cascade(f"run({SPLADE})", dl19)
    for q, ranked in _ranked(dl19["root"] / SPLADE).items():
        assert list(orig[q]) == [d for d, _ in ranked]


def test_rrf_matches_ranx(dl19: dict, tmp_path: Path) -> None:
    ranx = dl19["ranx"]
    ours = _cascade(f"rrf(run({BM25}), run({SPLADE}))", dl19)
    # ranx.fuse normalises min-max first by default; that keeps every run's order, so RRF is unaffected
    theirs = ranx.fuse(runs=dl19["untied"], method="rrf", params={"k": 60})
    assert_same_fusion(ours, theirs, 1e-6)
    # and by hand for one query: sum of 1 / (60 + rank)
    q = dl19["queries"][0].id
    expected: dict[str, float] = defaultdict(float)
    for f in (BM25, SPLADE):
        for rank, (doc, _) in enumerate(_ranked(dl19["root"] / f)[q], 1):
            expected[doc] += 1 / (60 + rank)
    assert set(ours[q]) == set(expected)
    assert max(abs(ours[q][d] - v) for d, v in expected.items()) < 1e-7
    # k is passed through
    ours10 = _cascade(f"rrf(run({BM25}), run({SPLADE}), k=10)", dl19)
    assert_same_fusion(ours10, ranx.fuse(runs=dl19["untied"], method="rrf", params={"k": 10}), 1e-6)


@pytest.mark.parametrize("ours,norm,method", [
    ("combsum", "minmax", "sum"), ("combmnz", "minmax", "mnz"),
    ("combsum", "zscore", "sum"), ("combmnz", "zscore", "mnz"),
])
def test_comb_matches_ranx(dl19: dict, ours: str, norm: str, method: str) -> None:
    # ranx: min-max (s - min) / (max - min) and zmuv (s - mean) / std (population std): the same
    # definitions as cascade's minmax and zscore, except for a query whose scores are all equal
    # (ranx 0, cascade 1 for minmax), which these runs do not have
    ranx = dl19["ranx"]
    for docs in read_trec_run(dl19["root"] / SPLADE).values():
        assert len(set(docs.values())) > 1
    result = _cascade(f"{ours}(run({BM25}), run({SPLADE}), norm={norm})", dl19)
    theirs = ranx.fuse(runs=dl19["runs"], norm={"minmax": "min-max", "zscore": "zmuv"}[norm], method=method)
    assert_same_fusion(result, theirs, 1e-5)


def test_default_norm_is_minmax(dl19: dict) -> None:
    assert _cascade(f"combsum(run({BM25}), run({SPLADE}))", dl19) == \
        _cascade(f"combsum(run({BM25}), run({SPLADE}), norm=minmax)", dl19)


def test_union_of_runs_orders_by_best_rank(dl19: dict) -> None:
    ours = _cascade(f"run({BM25}) | run({SPLADE})", dl19)
    inputs = [_ranked(dl19["root"] / f) for f in (BM25, SPLADE)]
    for q, scores in ours.items():
        best: dict[str, tuple[int, int]] = {}
        for i, ranked in enumerate(inputs):
            for rank, (doc, _) in enumerate(ranked.get(q, []), 1):
                best[doc] = min(best.get(doc, (rank, i)), (rank, i))
        assert list(scores) == sorted(best, key=lambda d: best[d]), q
        for doc, (rank, i) in best.items():
            assert scores[doc] == pytest.approx(1 / (rank + i / 2), rel=1e-6)


# -- small hand-computed cases ----------------------------------------------------------------

SPACE = IdTable(["a", "b", "c", "d", "e"])  # doc numbers in id order: ties by id
FIXED: dict[str, dict[str, list[tuple[str, float]]]] = {
    "fx": {"q1": [("a", 3.0), ("d", 2.0), ("b", 1.0)], "q2": [("a", 1.0)]},
    "fy": {"q1": [("b", 4.0), ("e", 3.0), ("c", 2.0)], "q2": []},
}


def _fixed(name: str):  # noqa: ANN202
    def fn(queries, candidates):  # noqa: ANN001, ANN202
        lists = [FIXED[name].get(q.id, []) for q in queries]
        return Candidates.from_lists([q.id for q in queries], [SPACE.add([d for d, _ in lst]) for lst in lists],
                                     [np.array([s for _, s in lst], np.float32) for lst in lists], SPACE)

    return stage(fn, name=name)


fx, fy = _fixed("fx"), _fixed("fy")
QUERIES = [Query("q1", ""), Query("q2", "")]


def _run(text: str) -> dict[str, dict[str, float]]:
    return Executor().run(parse(text).compile(), QUERIES).to_run()


def _z(values: list[float]) -> list[float]:
    mean, std = statistics.fmean(values), statistics.pstdev(values)
    return [(v - mean) / std for v in values]


def test_linear_zscore_imputes_each_inputs_minimum() -> None:
    zx = dict(zip("adb", _z([3.0, 2.0, 1.0])))
    zy = dict(zip("bec", _z([4.0, 3.0, 2.0])))
    lo_x, lo_y = min(zx.values()), min(zy.values())
    expected = {d: 0.3 * zx.get(d, lo_x) + 0.7 * zy.get(d, lo_y) for d in "abcde"}
    assert expected["a"] == pytest.approx(0.3 * math.sqrt(1.5) - 0.7 * math.sqrt(1.5))
    got = _run("linear(0.3 * fx, 0.7 * fy, norm=zscore)")
    q1 = got["q1"]
    assert set(q1) == set("abcde")
    for d, v in expected.items():
        assert q1[d] == pytest.approx(v, abs=1e-6), d
    assert list(q1) == ["b", "e", "a", "d", "c"] == _order(expected)
    # q2: only fx has results (a single document: z-score 0); fy's minimum for an empty list is 0
    assert got["q2"] == {"a": pytest.approx(0.0)}
    # CombSUM instead adds 0 for a missing document, which a negative z-score makes a reward
    summed = _run("combsum(0.3 * fx, 0.7 * fy, norm=zscore)")["q1"]
    assert summed["a"] == pytest.approx(0.3 * zx["a"], abs=1e-6)
    assert summed["c"] == pytest.approx(0.7 * zy["c"], abs=1e-6)
    assert summed["a"] != pytest.approx(q1["a"], abs=1e-3)


def test_linear_minmax_and_none() -> None:
    mx = {"a": 1.0, "d": 0.5, "b": 0.0}
    my = {"b": 1.0, "e": 0.5, "c": 0.0}
    got = _run("linear(0.5 * fx, 0.5 * fy)")["q1"]  # norm=minmax is the default: the minimum is 0
    for d in "abcde":
        assert got[d] == pytest.approx(0.5 * mx.get(d, 0.0) + 0.5 * my.get(d, 0.0), abs=1e-6)
    raw = _run("linear(fx, 2 * fy, norm=none)")["q1"]  # raw scores: the minimum is the lowest score
    x, y = dict(FIXED["fx"]["q1"]), dict(FIXED["fy"]["q1"])
    for d in "abcde":
        assert raw[d] == pytest.approx(x.get(d, 1.0) + 2 * y.get(d, 2.0)), d


def test_raw_sum_and_weights() -> None:
    got = _run("fx + 2 * fy")["q1"]
    assert got == {"b": 9.0, "e": 6.0, "c": 4.0, "a": 3.0, "d": 2.0}
    assert list(got) == ["b", "e", "c", "a", "d"]
    assert _run("fx + -1 * fy")["q1"] == {"a": 3.0, "d": 2.0, "c": -2.0, "b": -3.0, "e": -3.0}
    assert list(_run("fx + -1 * fy")["q1"]) == ["a", "d", "c", "b", "e"]  # tie (b, e) by doc number


def test_rrf_weights_by_hand() -> None:
    got = _run("rrf(2 * fx, fy, k=1)")["q1"]
    expected = {"a": 2 / 2, "d": 2 / 3, "b": 2 / 4 + 1 / 2, "e": 1 / 3, "c": 1 / 4}
    assert got == pytest.approx(expected)
    assert list(got) == ["a", "b", "d", "e", "c"]


def test_combmnz_by_hand() -> None:
    got = _run("combmnz(fx, fy, norm=minmax)")["q1"]
    assert got == pytest.approx({"a": 1.0, "d": 0.5, "b": 2 * (0.0 + 1.0), "e": 0.5, "c": 0.0})


def test_union_by_hand() -> None:
    got = _run("fx | fy")
    assert list(got["q1"]) == ["a", "b", "d", "e", "c"]  # best rank, then the earlier input
    assert got["q1"] == pytest.approx({"a": 1.0, "b": 1 / 1.5, "d": 1 / 2, "e": 1 / 2.5, "c": 1 / 3.5})
    assert got["q2"] == {"a": 1.0}
    assert list(_run("fy | fx")["q1"]) == ["b", "a", "e", "d", "c"]
