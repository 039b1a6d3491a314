"""Context selection stages (budget, adaptive_k, mmr): what each keeps, the records of what it
cut and why, their parameters and errors, and how they sit in pipelines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cascade
from cascade.context import selections
from cascade.context.adaptive_k import largest_gap
from cascade.context.base import count_tokens
from cascade.context.budget import budget_cut
from cascade.context.mmr import mmr_select, scaled
from cascade.core.errors import CascadeError
from cascade.index import representations as reps

TEXTS = {
    "a": "solar panels turn sunlight into electric power on roofs",
    "b": "solar panels turn sunlight into electric power on roofs and walls",  # a near-copy of a
    "c": "wind turbines make electric power from moving air",
    "d": "hydro dams store water and make power",
    "e": "a long text about power " + "and more words " * 40,
}


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> cascade.Index:
    docs = [cascade.Doc(i, t) for i, t in TEXTS.items()]
    return cascade.Index.build(docs, tmp_path_factory.mktemp("ctx") / "i.idx")


def run(index: cascade.Index, text: str, query: str = "solar electric power") -> cascade.Candidates:
    return cascade.parse(text, index=index)([query])


# -- kernels ------------------------------------------------------------------------------------

def test_budget_kernel_stops_or_fills() -> None:
    assert budget_cut([5, 5, 5], 10) == ([0, 1], {2: "over the budget: needs 5 tokens, 0 left of 10"})
    kept, cut = budget_cut([4, 20, 3, 3], 10)
    assert kept == [0] and cut[1].startswith("over the budget: needs 20") and cut[3] == \
        "after the budget was reached at rank 2"
    assert budget_cut([4, 20, 3, 3], 10, fill=True)[0] == [0, 2, 3]
    assert budget_cut([11], 10) == ([], {0: "over the budget: needs 11 tokens, 10 left of 10"})
    assert budget_cut([], 10) == ([], {})
    assert budget_cut([11, 2, 1], 10, min_k=1) == ([0], {1: "over the budget: needs 2 tokens, 0 left of 10",
                                                        2: "after the budget was reached at rank 2"})
    assert budget_cut([3, 11, 1], 10, min_k=2, fill=True) == ([0, 1], {
        2: "over the budget: needs 1 tokens, 0 left of 10"})


def test_largest_gap_kernel() -> None:
    assert largest_gap([10, 9, 5, 4]) == (2, 1)
    assert largest_gap([10, 2, 1.5, 1]) == (1, 0)
    assert largest_gap([10, 2, 1.5, 1], min_k=2) == (2, 1)  # gap looked for after rank 2 only
    assert largest_gap([10, 9, 8, 1], max_k=3) == (1, 0)  # the 8 -> 1 drop is past max_k
    assert largest_gap([3, 2, 1, 0], buffer=2) == (3, 0)  # equal gaps: the first; then two more
    assert largest_gap([5.0]) == (1, -1) and largest_gap([]) == (0, -1)
    assert largest_gap([5, 4, 3], min_k=3) == (3, -1)


def test_mmr_kernel_trades_relevance_for_novelty() -> None:
    rel = np.array([1.0, 0.9, 0.8, 0.1])
    sim = np.eye(4)
    sim[0, 1] = sim[1, 0] = 0.95
    assert mmr_select(rel, sim, k=3, lam=1.0) == [0, 1, 2]  # relevance only
    assert mmr_select(rel, sim, k=3, lam=0.5) == [0, 2, 3]  # the near-copy of 0 comes after even 3
    assert mmr_select(rel, sim, k=9, lam=0.5) == [0, 2, 3, 1]  # k beyond n: all, each once
    assert mmr_select(np.array([]), np.zeros((0, 0)), k=3, lam=0.5) == []
    assert scaled(np.array([3.0, 2.0, 1.0])).tolist() == [1.0, 0.5, 0.0] and scaled(np.array([2.0, 2.0])).tolist() == \
        [1.0, 1.0]


def test_count_tokens_counts_words_and_punctuation() -> None:
    assert count_tokens("Hello, world!") == 4 and count_tokens("") == 0


# -- stages ---------------------------------------------------------------------------------------

def test_budget_stage_keeps_a_prefix_and_records_the_cut(index: cascade.Index) -> None:
    full = run(index, "bm25")
    order = list(full.to_run()["0"])
    lengths = [count_tokens(TEXTS[i]) for i in order]
    budget = lengths[0] + lengths[1]
    out = run(index, f"bm25 >> budget(tokens={budget})")
    assert list(out.to_run()["0"]) == order[:2]
    assert out.score.tolist() == full.score[:2].tolist()  # scores and order unchanged
    [step] = selections(out)[0]
    assert step.method == f"budget(tokens={budget})" and step.considered == len(order)
    assert step.kept == order[:2] and [c.id for c in step.cut] == order[2:]
    assert step.cut[0].reason == f"over the budget: needs {lengths[2]} tokens, 0 left of {budget}"
    assert step.cut[0].rank == 3 and step.detail == {"tokens": budget, "budget": budget}


def test_budget_keeps_a_long_top_passage_unless_min_k_is_0(index: cascade.Index) -> None:
    q = "power"
    top = list(run(index, "bm25", q).to_run()["0"])[0]
    assert list(run(index, "bm25 >> budget(tokens=1)", q).to_run()["0"]) == [top]
    out = run(index, "bm25 >> budget(tokens=1, min_k=0)", q)
    assert len(out.doc) == 0 and selections(out)[0][0].cut[0].id == top


def test_budget_fill_skips_a_long_passage(index: cascade.Index) -> None:
    q = "power"
    order = list(run(index, "bm25", q).to_run()["0"])
    long_rank = order.index("e")
    small = sum(count_tokens(TEXTS[i]) for i in order if i != "e")
    kept = list(run(index, f"bm25 >> budget(tokens={small}, fill=true)", q).to_run()["0"])
    assert kept == [i for i in order if i != "e"]
    stop = list(run(index, f"bm25 >> budget(tokens={small})", q).to_run()["0"])
    assert stop == order[:long_rank]


def test_adaptive_k_cuts_at_the_largest_gap(index: cascade.Index) -> None:
    full = run(index, "bm25")
    scores = full.score.tolist()
    k, at = largest_gap(scores, 1, 20)
    out = run(index, "bm25 >> adaptive_k")
    assert out.score.tolist() == scores[:k]
    [step] = selections(out)[0]
    assert step.detail["gap_after_rank"] == at + 1 and len(step.cut) == len(scores) - k
    assert all(c.reason.startswith("below the largest score gap") for c in step.cut)
    assert len(run(index, "bm25 >> adaptive_k(min_k=3)").score) >= 3
    with pytest.raises(CascadeError, match="max_k .2. must be at least min_k .3."):
        run(index, "bm25 >> adaptive_k(min_k=3, max_k=2)")


def test_mmr_with_term_overlap_leaves_out_the_near_copy(index: cascade.Index) -> None:
    order = list(run(index, "bm25").to_run()["0"])
    assert order[:2] in (["a", "b"], ["b", "a"])  # the two near-copies lead
    out = run(index, "bm25 >> mmr(k=2, lam=0.5)")
    kept = list(out.to_run()["0"])
    assert len(kept) == 2 and kept[0] == order[0] and order[1] not in kept
    [step] = selections(out)[0]
    assert step.detail["similarity"] == "terms"
    reason = next(c.reason for c in step.cut if c.id == order[1])
    assert reason.startswith("redundant: similarity") and "(terms)" in reason
    assert list(run(index, "bm25 >> mmr(k=2, lam=1.0)").to_run()["0"]) == order[:2]


def test_mmr_uses_stored_dense_vectors(tmp_path: Path) -> None:
    """With a stored bi-encoder representation, similarity is the vectors' cosine: here vectors
    that call a and c the same passage (against their terms) make MMR drop c, and keep b."""
    docs = [cascade.Doc(i, t) for i, t in TEXTS.items()]
    idx = cascade.Index.build(docs, tmp_path / "d.idx")
    vec = {"a": [1, 0, 0], "b": [0, 1, 0], "c": [1, 0, 0], "d": [0, 0, 1], "e": [0, 0, 1]}

    def encode(seg):  # type: ignore[no-untyped-def]
        ids = seg.doc_ids(np.arange(seg.n_docs))
        return {"dense": np.array([vec[i] for i in ids], dtype=np.float32)}

    reps.add_representation(idx, "fake", {"kind": "biencoder", "tokens": False, "model": "fake"}, encode)
    idx = idx.refresh()
    q = "electric power"
    assert list(run(idx, "bm25", q).to_run()["0"]) == ["a", "b", "c", "d", "e"]
    out = run(idx, "bm25 >> mmr(k=3, lam=0.3)", q)
    assert selections(out)[0][0].detail["similarity"] == "dense:fake"
    assert list(out.to_run()["0"]) == ["a", "b", "d"]  # c's vector is a's
    terms = run(idx, "bm25 >> mmr(k=3, lam=0.3, sim=terms)", q)
    assert selections(terms)[0][0].detail["similarity"] == "terms"
    assert "b" not in terms.to_run()["0"]  # b's terms are a's
    with pytest.raises(CascadeError, match="no stored dense representation 'nope'"):
        run(idx, "bm25 >> mmr(rep=nope)", q)


def test_mmr_dense_without_vectors_is_one_line(index: cascade.Index) -> None:
    with pytest.raises(CascadeError, match="sim=dense needs stored dense vectors"):
        run(index, "bm25 >> mmr(sim=dense)")


def test_steps_chain_and_strings_round_trip(index: cascade.Index) -> None:
    p = cascade.parse("bm25 % 50 >> mmr(k=3, lam=0.7) >> budget(tokens=20, fill=true)", index=index)
    assert cascade.parse(str(p), index=index) == p
    out = p.search("solar electric power")
    steps = selections(out)[0]
    assert [s.method for s in steps] == ["mmr(k=3, lam=0.7)", "budget(fill=true, tokens=20)"]
    assert steps[1].considered == len(steps[0].kept) and list(out.to_run()["0"]) == steps[1].kept
    assert cascade.parse("bm25 >> mmr(depth=2)", index=index).compile() == \
        cascade.parse("bm25 % 2 >> mmr(depth=2)", index=index).compile()


def test_selection_on_a_stored_run(index: cascade.Index, tmp_path: Path) -> None:
    run_file = tmp_path / "r.trec"
    run_file.write_text("0 Q0 c 1 3.0 x\n0 Q0 a 2 2.0 x\n0 Q0 d 3 1.0 x\n")
    out = cascade.parse(f"run({run_file}) >> budget(tokens=12)", index=index).search("anything")
    assert list(out.to_run()["0"]) == ["c"]


def test_user_mistakes_are_one_line(index: cascade.Index) -> None:
    with pytest.raises(CascadeError, match="put a first stage before it"):
        run(index, "budget")
    with pytest.raises(CascadeError, match="did you mean 'tokens'"):
        run(index, "bm25 >> budget(token=5)")
    with pytest.raises(CascadeError, match="lam must be at most 1"):
        run(index, "bm25 >> mmr(lam=2)")
    with pytest.raises(CascadeError, match="sim must be one of auto, dense, terms"):
        run(index, "bm25 >> mmr(sim=cosine)")


def test_no_candidates_gives_empty_selections(index: cascade.Index) -> None:
    out = run(index, "bm25 >> budget >> adaptive_k >> mmr", "zzzz")
    assert len(out.doc) == 0 and [s.considered for s in selections(out)[0]] == [0, 0, 0]


def test_selection_on_a_passage_index(tmp_path: Path) -> None:
    """Before to_docs a selection chooses passages; after it, documents (each shown by its best
    passage, whose text the budget counts)."""
    long = "Solar panels on the roof. " * 30 + "Wind turbines on the hill. " * 30
    docs = [cascade.Doc("long.md", long), cascade.Doc("short.md", "Solar power is cheap.")]
    idx = cascade.Index.build(docs, tmp_path / "p.idx", passages={"tokens": 40, "overlap": 0})
    passages = cascade.parse("bm25 >> budget(tokens=40)", index=idx, passages=True)(["solar"])
    [step] = selections(passages)[0]
    assert all("#" in i for i in step.kept + [c.id for c in step.cut]) and len(step.kept) >= 1
    documents = cascade.parse("bm25 >> to_docs >> budget(tokens=10)", index=idx)(["solar"])
    [step] = selections(documents)[0]
    assert step.kept + [c.id for c in step.cut] == list(documents.space.doc_ids(
        cascade.parse("bm25 >> to_docs", index=idx)(["solar"]).doc))
    assert set(step.kept) <= {"long.md", "short.md"} and step.kept == list(documents.to_run()["0"])
