"""Candidate pruning (``min_ratio``) and early termination (``patience``) of the MaxSim reranker,
on the tiny random sentence-transformers model of conftest (no network)."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")

from conftest import random_docs, random_queries  # noqa: E402

import cascade  # noqa: E402
from cascade.core.candidates import Candidates  # noqa: E402
from cascade.core.errors import CascadeError  # noqa: E402
from cascade.core.nodes import format_call  # noqa: E402
from cascade.core.registry import Context, lookup  # noqa: E402
from cascade.models.stored import encode_biencoder  # noqa: E402
from cascade.rerank.maxsim import (  # noqa: E402
    CHUNK,
    MaxSim,
    exact_scores,
    follow_in_order,
    in_threads,
    ratio_keep,
    score_in_order,
)
from cascade.retrieve.bm25 import BM25  # noqa: E402


def _docs(n: int, seed: int = 0) -> list[cascade.Doc]:
    return random_docs(n, seed)


def _queries(n: int, seed: int = 1) -> list[cascade.Query]:
    return random_queries(n, seed, min_words=2)


@pytest.fixture(scope="module")
def setup(tiny_bi_encoder: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[cascade.Index, str]:
    idx = cascade.Index.build(_docs(80, seed=3), tmp_path_factory.mktemp("early") / "toy.idx")
    return encode_biencoder(idx, tiny_bi_encoder), tiny_bi_encoder


def _first(idx: cascade.Index, n: int = 12, k: int = 40) -> tuple[list[cascade.Query], Candidates]:
    queries = _queries(n)
    return queries, BM25(idx).search_batch(queries, k=k)


def _exact(stage: MaxSim, query: cascade.Query, nums: np.ndarray) -> np.ndarray:
    """Exact MaxSim of each of ``nums``, from the module's scoring function (what today's stage uses)."""
    q = stage.query_tokens([query])[0]
    return exact_scores(q, (stage.tokens.rows(*w) for w in stage.tokens.slices(nums.astype(np.int64))))


def _rows(cands: Candidates) -> list[tuple[list[int], list[float]]]:
    return [(d.tolist(), s.tolist()) for _, d, s in cands.per_query()]


# -- off: today's behaviour, bit for bit ---------------------------------------------------------

@pytest.mark.parametrize("k", [None, 5])
def test_options_off_is_todays_stage(setup: tuple[cascade.Index, str], k: int | None) -> None:
    idx, model = setup
    queries, first = _first(idx)
    default = MaxSim(idx, model=model, k=k, prune=False)
    explicit = MaxSim(idx, model=model, k=k, prune=False, min_ratio=None, patience=None, chunk=CHUNK, watch=None)
    assert not default.early and default.key() == explicit.key() == ("maxsim", model, default.k, idx.version)
    assert str(default) == str(explicit) and "min_ratio" not in str(default) and "patience" not in str(default)
    out = default.rerank(queries, first)
    assert _rows(out) == _rows(explicit.rerank(queries, first))
    for q, (_, fd, _), (_, od, os_) in zip(queries, first.per_query(), out.per_query()):
        scores = _exact(default, q, fd)
        order = np.lexsort((fd, -scores))[: len(fd) if k is None else k]  # by score, ties by doc number
        assert od.tolist() == fd[order].tolist()
        assert os_.tolist() == scores[order].tolist()


# -- candidate pruning ---------------------------------------------------------------------------

def test_ratio_keep_rule() -> None:
    np.testing.assert_array_equal(ratio_keep(np.array([10.0, 6.0, 5.0, 4.9, 0.0]), 0.5), [1, 1, 1, 0, 0])
    np.testing.assert_array_equal(ratio_keep(np.array([10.0, 6.0]), 1.0), [1, 0])
    # negative or mixed scores: min-max normalised over the query's candidates
    np.testing.assert_array_equal(ratio_keep(np.array([1.0, 0.0, -0.5, -1.0]), 0.5), [1, 1, 0, 0])
    np.testing.assert_array_equal(ratio_keep(np.array([-1.0, -2.0, -3.0]), 0.25), [1, 1, 0])
    np.testing.assert_array_equal(ratio_keep(np.array([-2.0, -2.0]), 1.0), [1, 1])
    assert ratio_keep(np.array([], np.float32), 0.5).tolist() == []


@pytest.mark.parametrize("min_ratio", [0.4, 0.8, 1.0])
def test_min_ratio_scores_exactly_the_kept_candidates_and_appends_the_rest(setup: tuple[cascade.Index, str],
                                                                            min_ratio: float) -> None:
    idx, model = setup
    queries, first = _first(idx)
    stage = MaxSim(idx, model=model, min_ratio=min_ratio)
    out = stage.rerank(queries, first)
    kept_total = 0
    for q, (_, fd, fs), (_, od, os_) in zip(queries, first.per_query(), out.per_query()):
        if not len(fd):
            assert not len(od)
            continue
        keep = fs.astype(np.float64) >= min_ratio * float(fs.max())  # BM25 scores are positive: plain ratio
        kept, dropped = fd[keep], fd[~keep]
        kept_total += len(kept)
        scores = _exact(stage, q, kept)
        order = np.lexsort((kept, -scores))
        assert od[:len(kept)].tolist() == kept[order].tolist()
        assert os_[:len(kept)].tolist() == scores[order].tolist()
        assert od[len(kept):].tolist() == dropped.tolist()  # in first-stage order, after the scored
        assert np.all(np.diff(os_) <= 0) and (not len(dropped) or os_[len(kept)] < os_[len(kept) - 1])
    assert stage.counts.scored == kept_total < len(first.doc) and stage.counts.candidates == len(first.doc)


def test_min_ratio_with_rank_safe_bounds_keeps_the_top_k_of_the_kept(setup: tuple[cascade.Index, str]) -> None:
    idx, model = setup
    queries, first = _first(idx)
    plain = MaxSim(idx, model=model, k=3, prune=False, min_ratio=0.3).rerank(queries, first)
    bounded = MaxSim(idx, model=model, k=3, prune=True, min_ratio=0.3).rerank(queries, first)
    assert _rows(bounded) == _rows(plain)


def test_min_ratio_on_mixed_sign_scores_uses_min_max(setup: tuple[cascade.Index, str]) -> None:
    idx, model = setup
    nums = np.array([7, 3, 12, 40, 25], np.int32)
    scores = np.array([0.9, 0.2, -0.1, -0.5, -1.1], np.float32)  # normalised: 1, .65, .5, .3, 0
    cands = Candidates.from_lists(["q0"], [nums], [scores], idx)
    query = cascade.Query("q0", "cats purr in the garden")
    stage = MaxSim(idx, model=model, min_ratio=0.5)
    _, od, _ = next(iter(stage.rerank([query], cands).per_query()))
    kept = nums[:3]
    exact = _exact(stage, query, kept)
    assert od[:3].tolist() == kept[np.lexsort((kept, -exact))].tolist()
    assert od[3:].tolist() == [40, 25] and stage.counts.scored == 3


def test_min_ratio_needs_candidates(setup: tuple[cascade.Index, str]) -> None:
    idx, model = setup
    with pytest.raises(CascadeError, match="min_ratio needs"):
        MaxSim(idx, model=model, min_ratio=0.5).score(_queries(1), [np.arange(5)], 10)


# -- early termination ---------------------------------------------------------------------------

def test_score_in_order_stopping_rule() -> None:
    values = np.array([5, 4, 3, 1, 1, 1, 0, 0, 0, 9, 2, 2], np.float32)
    calls: list[list[int]] = []

    def score(batch: np.ndarray) -> np.ndarray:
        calls.append(batch.tolist())
        return values[batch]

    pos, s = score_in_order(score, len(values), top=2, chunk=3, patience=1)
    assert pos.tolist() == list(range(6)) and s.tolist() == values[:6].tolist()
    assert calls == [[0, 1, 2], [3, 4, 5]]  # nothing after the stop is scored
    assert len(score_in_order(score, len(values), 2, 3, 2)[0]) == 9
    assert len(score_in_order(score, len(values), 2, 3, 3)[0]) == 12  # the 9 enters: the count restarts
    # a tie with the top-th best does not enter
    tie = np.array([3, 2, 2, 2], np.float32)
    assert len(score_in_order(lambda b: tie[b], 4, top=2, chunk=1, patience=1)[0]) == 3
    assert len(score_in_order(lambda b: tie[b], 0, 2, 3, 1)[0]) == 0


def test_follow_in_order_placeholders() -> None:
    pos, s = follow_in_order(6, np.array([4, 1]), np.array([2.5, -3.0], np.float32))
    assert pos.tolist() == [4, 1, 0, 2, 3, 5]
    assert s[:2].tolist() == [2.5, -3.0] and np.all(np.diff(s[1:]) < 0)
    big = follow_in_order(200, np.array([0]), np.array([1e6], np.float32))[1]
    assert big.dtype == np.float32 and np.all(np.diff(big) < 0)


@pytest.mark.parametrize("k", [None, 5])
def test_large_patience_is_identical_to_full_scoring(setup: tuple[cascade.Index, str], k: int | None) -> None:
    idx, model = setup
    queries, first = _first(idx)
    full = MaxSim(idx, model=model, k=k, prune=False).rerank(queries, first)
    stage = MaxSim(idx, model=model, k=k, patience=1000, chunk=3)
    assert _rows(stage.rerank(queries, first)) == _rows(full)
    assert stage.counts.scored == stage.counts.candidates == len(first.doc)


@pytest.mark.parametrize("chunk,patience,watch", [(3, 1, None), (4, 2, 2), (1, 3, 5)])
def test_small_patience_scores_a_prefix_in_maxsim_order(setup: tuple[cascade.Index, str], chunk: int,
                                                       patience: int, watch: int | None) -> None:
    idx, model = setup
    queries, first = _first(idx)
    stage = MaxSim(idx, model=model, patience=patience, chunk=chunk, watch=watch)
    out = stage.rerank(queries, first)
    top = 10 if watch is None else watch  # no cutoff follows: the default watch is 10
    total = 0
    for q, (_, fd, _), (_, od, os_) in zip(queries, first.per_query(), out.per_query()):
        scores = _exact(stage, q, fd)
        m = _reference_stop(scores, top, chunk, patience)
        total += m
        prefix, order = fd[:m], np.lexsort((fd[:m], -scores[:m]))
        assert od[:m].tolist() == prefix[order].tolist()
        assert os_[:m].tolist() == scores[:m][order].tolist()
        assert od[m:].tolist() == fd[m:].tolist() and sorted(od.tolist()) == sorted(fd.tolist())
    assert stage.counts.scored == total < len(first.doc)


def _reference_stop(scores: np.ndarray, top: int, chunk: int, patience: int) -> int:
    """How many candidates early termination scores, by the rule written out plainly."""
    seen: list[float] = []
    misses = 0
    for start in range(0, len(scores), chunk):
        block = [float(x) for x in scores[start:start + chunk]]
        kth = sorted(seen, reverse=True)[top - 1] if len(seen) >= top else None
        entered = kth is None or any(x > kth for x in block)
        seen += block
        misses = 0 if entered else misses + 1
        if misses >= patience:
            return len(seen)
    return len(scores)


def test_watch_defaults_to_the_cutoff(setup: tuple[cascade.Index, str]) -> None:
    idx, model = setup
    queries, first = _first(idx)
    cut = MaxSim(idx, model=model, patience=1, chunk=2).limit(3)
    watched = MaxSim(idx, model=model, k=3, patience=1, chunk=2, watch=3)
    assert _rows(cut.rerank(queries, first)) == _rows(watched.rerank(queries, first))
    assert cut.counts.scored == watched.counts.scored


def test_both_options_and_pipeline_strings(setup: tuple[cascade.Index, str]) -> None:
    idx, model = setup
    quoted = repr(model).replace("'", '"')
    plain = cascade.parse(f"bm25 % 30 >> maxsim(model={quoted}) % 10", index=idx)
    early = cascade.parse(f"bm25 % 30 >> maxsim(model={quoted}, min_ratio=0.5, patience=2, chunk=4) % 10",
                          index=idx)
    assert "min_ratio=0.5" in str(early) and "patience=2" in str(early) and "chunk=4" in str(early)
    assert plain.compile().key() != early.compile().key()  # the stage cache never mixes them up
    queries = _queries(6, seed=9)
    hits = early.search(queries)
    assert [len(d) for _, d, _ in hits.per_query()] == [len(d) for _, d, _ in plain.search(queries).per_query()]


# -- parameter errors ----------------------------------------------------------------------------

@pytest.mark.parametrize("params,message", [
    ({"min_ratio": 0}, "min_ratio must be in (0, 1]"),
    ({"min_ratio": 1.5}, "min_ratio must be in (0, 1]"),
    ({"min_ratio": -0.2}, "min_ratio must be in (0, 1]"),
    ({"min_ratio": "lots"}, "min_ratio must be a number"),
    ({"patience": 0}, "patience must be at least 1"),
    ({"patience": 2, "chunk": 0}, "chunk must be at least 1"),
    ({"patience": 2, "watch": 0}, "watch must be at least 1"),
    ({"chunk": 4}, "set patience too"),
    ({"patience": 2, "prune": True}, "use one of them"),
])
def test_bad_parameters_are_one_line_errors(setup: tuple[cascade.Index, str], params: dict, message: str) -> None:
    idx, _ = setup
    with pytest.raises(CascadeError) as direct:  # the stage's own error: one line
        lookup("maxsim").make(Context.of(idx), [], params)
    assert str(direct.value).startswith("maxsim: ") and message in str(direct.value)
    assert "\n" not in str(direct.value)
    with pytest.raises(CascadeError) as err:  # in a pipeline string the parser adds the text and a caret below
        cascade.parse(f"bm25 % 10 >> {format_call('maxsim', params=params)}", index=idx)
    assert str(err.value).splitlines()[0] == str(direct.value)


def test_bad_parameters_in_python(setup: tuple[cascade.Index, str]) -> None:
    idx, model = setup
    for kwargs in ({"min_ratio": 0.0}, {"min_ratio": float("nan")}, {"patience": 2, "chunk": 0},
                   {"patience": True}):
        with pytest.raises(CascadeError):
            MaxSim(idx, model=model, **kwargs)
    assert MaxSim(idx, model=model, min_ratio=1, patience=1, chunk=1).min_ratio == 1.0


# -- queries on several threads ------------------------------------------------------------------

@pytest.mark.parametrize("options", [{"prune": False}, {"prune": True, "k": 3}, {"k": 3},
                                     {"min_ratio": 0.3, "patience": 1, "chunk": 4}])
def test_threads_never_change_a_result(setup: tuple[cascade.Index, str], options: dict) -> None:
    """Queries scored on one thread or several give the same documents, scores (to the bit) and
    counts; ``threads`` is not part of the stage's cache key."""
    idx, model = setup
    queries, first = _first(idx, n=20)
    one, four = MaxSim(idx, model=model, threads=1, **options), MaxSim(idx, model=model, threads=4, **options)
    assert _rows(one.rerank(queries, first)) == _rows(four.rerank(queries, first))
    assert (one.counts, one.pruned_share) == (four.counts, four.pruned_share)
    assert one.key() == four.key() and "threads=4" in str(four)


def test_in_threads_keeps_the_order_and_runs_on_several_threads() -> None:
    import threading

    seen: set[str] = set()

    def work(i: int) -> int:
        seen.add(threading.current_thread().name)
        time.sleep(0.01)
        return i * i

    assert in_threads(work, range(8), 3) == [i * i for i in range(8)]
    assert len(seen) > 1
    seen.clear()
    assert in_threads(work, [5], 3) == [25] and seen == {threading.current_thread().name}
