"""Passage indexes: splitting, aggregation to documents (to_docs), writes by document, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import cascade
from cascade.cli import app
from cascade.core.candidates import Candidates
from cascade.core.errors import CascadeError
from cascade.fuse.to_docs import ToDocs, aggregate, to_documents
from cascade.index.passages import DocumentView, first_passages, parent_id, passage_id
from cascade.text.passages import split_passages

# -- splitting ---------------------------------------------------------------------------------


def words(text: str, p) -> list[str]:  # type: ignore[no-untyped-def]
    return text[p.start:p.end].split()


def test_passages_respect_the_size_and_cover_every_word_in_order() -> None:
    text = " ".join(f"Sentence {i} has five words." for i in range(40))  # 200 words, 40 sentences
    passages = split_passages(text, tokens=23, overlap=0)
    assert all(p.tokens <= 23 and p.tokens == len(words(text, p)) for p in passages)
    assert [w for p in passages for w in words(text, p)] == text.split()  # no overlap: a partition
    assert all(text[p.start:p.end].startswith("Sentence") and text[p.end - 1] == "." for p in passages)
    assert [p.tokens for p in passages[:-1]] == [20] * (len(passages) - 1)  # 4 whole sentences, never 4.6


def test_overlap_repeats_whole_sentences_up_to_the_limit() -> None:
    text = " ".join(f"Sentence {i} has five words." for i in range(40))
    passages = split_passages(text, tokens=25, overlap=12)
    for a, b in zip(passages, passages[1:]):
        shared = a.end - b.start
        assert shared > 0, "consecutive passages overlap"
        repeated = text[b.start:a.end].split()
        assert len(repeated) == 10  # two whole sentences (a third would pass 12 tokens)
        assert text[b.start:].startswith("Sentence")
    assert split_passages(text, tokens=25, overlap=4)[1].start == split_passages(text, tokens=25)[1].start


def test_paragraphs_and_long_sentences() -> None:
    long_sentence = " ".join(["word"] * 25) + "."
    text = f"Short one. Another short one.\n\n{long_sentence}\n\nEnd here."
    passages = split_passages(text, tokens=10)
    assert [p.tokens for p in passages] == [5, 10, 10, 7]  # the long sentence is cut in runs of 10 words
    assert text[passages[0].start:passages[0].end] == "Short one. Another short one."
    with pytest.raises(CascadeError, match="overlap must be"):
        split_passages(text, tokens=10, overlap=10)
    with pytest.raises(CascadeError, match="tokens must be a positive"):
        split_passages(text, tokens=0)
    assert split_passages("   \n\n ", tokens=5) == []


def test_markdown_headings_become_the_context_and_start_passages() -> None:
    body = " ".join(["Filler sentence of five."] * 6)  # 24 words
    text = (f"# Guide\n\n{body}\n\n## Install\n\nRun pip now.\n\n### On Linux\n\nUse apt.\n\n"
            f"```\n# not a heading inside code\n```\n\n## Usage\n\n{body}")
    passages = split_passages(text, tokens=30)
    assert [p.headings for p in passages] == [("Guide",), ("Guide", "Install"), ("Guide", "Usage")]
    assert text[passages[1].start:].startswith("## Install")  # the heading line starts its passage
    assert "Use apt." in text[passages[1].start:passages[1].end]  # short sections share a passage
    assert "# not a heading" in text[passages[1].start:passages[1].end]
    assert not any(p.headings[-1] == "not a heading inside code" for p in passages)
    # a passage cut inside a section keeps that section's heading path
    assert split_passages(text, tokens=8)[1].headings == ("Guide",)


# -- a passage index -----------------------------------------------------------------------------


def long_doc(doc_id: str, needle: str, filler: int = 60, title: str = "") -> cascade.Doc:
    text = "# Intro\n\n" + "Plain filler words here. " * filler + f"\n\n## Details\n\n{needle}"
    return cascade.Doc(doc_id, text, title, {"year": 2020})


@pytest.fixture
def pidx(tmp_path: Path) -> cascade.Index:
    docs = [long_doc("a", "Zebras have black stripes."), long_doc("b#2", "Zebras eat grass daily."),
            cascade.Doc("c", "Nothing about that animal.")]
    return cascade.Index.build(docs, tmp_path / "p.idx", passages={"tokens": 50, "overlap": 10},
                               filter_fields={"year": "int"})


def test_build_stores_passages_and_the_map(pidx: cascade.Index) -> None:
    ids = [d.id for d in pidx]
    assert ids[0] == "a#0" and "b#2#0" in ids and ids[-1] == "c#0"
    assert pidx.passages == {"tokens": 50, "overlap": 10}
    assert json.loads((pidx.path / "MANIFEST.json").read_text())["passages"] == {"overlap": 10, "tokens": 50}
    details = [d for d in pidx if "Zebras have" in d.text][0]
    assert details.title == "Intro > Details" or details.title == "Details"
    info = details.meta["_passage"]
    assert info["doc"] == "a" and info["n"] == info["count"] - 1 and details.meta["year"] == 2020
    assert pidx.get("a#0").text.startswith("# Intro")
    firsts = first_passages(pidx)
    assert [pidx.doc_ids([f])[0] for f in firsts.tolist()] == [passage_id(parent_id(i), 0) for i in ids]
    assert parent_id("b#2#0") == "b#2"


def test_documents_by_default_and_passages_on_request(pidx: cascade.Index) -> None:
    docs = cascade.parse("bm25", index=pidx)(["zebras stripes"])
    assert isinstance(docs.space, DocumentView)
    hits = docs.hits(0)
    assert [h.id for h in hits] == ["a", "b#2"]
    assert hits[0].text.endswith("Zebras have black stripes.") and hits[0].meta["_passage"]["doc"] == "a"
    passages = cascade.parse("bm25", index=pidx, passages=True)(["zebras stripes"])
    assert passages.space is pidx and passages.hits(0)[0].id.startswith("a#")
    # an explicit to_docs is not doubled, and a second one leaves documents as they are
    assert str(cascade.parse("bm25 % 10 >> to_docs(agg=firstp)", index=pidx)) == "bm25 % 10 >> to_docs(agg=firstp)"
    twice = ToDocs(pidx)
    assert to_documents(docs, pidx) is docs and twice.key()[0] == "to_docs"
    # documents fused by id, then shown: rrf of two aggregated lists keeps one entry per document
    fused = cascade.parse("rrf(bm25 >> to_docs, bm25(k1=1.2) >> to_docs)", index=pidx)(["zebras stripes"])
    assert list(fused.to_run()["0"]) == ["a", "b#2"]


def test_to_docs_on_a_document_index_is_a_clear_error(tmp_path: Path) -> None:
    idx = cascade.Index.build([cascade.Doc("x", "some text")], tmp_path / "d.idx")
    with pytest.raises(CascadeError, match="not a passage index"):
        cascade.parse("bm25 >> to_docs", index=idx)
    assert "to_docs" not in str(cascade.parse("bm25", index=idx))  # nothing appended to a document index


def test_aggregations_maxp_firstp_sum(pidx: cascade.Index) -> None:
    # passages by hand: two of document a (its first and its last), one of b#2, scored in order
    a_first, b_first = pidx.doc_number("a#0"), pidx.doc_number("b#2#0")
    a_count = pidx.get("a#0").meta["_passage"]["count"]
    a_last = pidx.doc_number(f"a#{a_count - 1}")
    cands = Candidates(["q"], [0, 3], [a_last, b_first, a_first], [3.0, 2.5, 1.0], pidx)

    def run(agg: str, n: int = 3) -> dict[str, float]:
        return to_documents(cands, pidx, agg, n).to_run()["q"]

    assert run("maxp") == {"a": 3.0, "b#2": 2.5}
    assert run("firstp") == {"b#2": 2.5, "a": 1.0}
    assert run("sum") == {"a": 4.0, "b#2": 2.5}
    assert run("sum", n=1) == run("maxp")
    shown = to_documents(cands, pidx, "maxp").hits(0)
    assert shown[0].meta["_passage"]["n"] == a_count - 1  # maxp shows the best passage
    assert to_documents(cands, pidx, "firstp").hits(0)[1].meta["_passage"]["n"] == 0
    with pytest.raises(CascadeError, match="agg must be"):
        to_documents(cands, pidx, "avgp")
    with pytest.raises(CascadeError, match="agg must be one of"):
        cascade.parse("bm25 >> to_docs(agg=avgp)", index=pidx)


def test_aggregate_kernel_groups_per_query() -> None:
    qidx = np.array([0, 0, 0, 1, 1])
    group = np.array([5, 6, 5, 5, 5])
    score = np.array([4.0, 3.0, 2.0, 9.0, 1.0])
    first = np.array([False, True, True, True, False])
    pos, s = aggregate(qidx, group, score, first, "maxp")
    assert pos.tolist() == [0, 1, 3] and s.tolist() == [4.0, 3.0, 9.0]
    pos, s = aggregate(qidx, group, score, first, "sum", n=2)
    assert s.tolist() == [6.0, 3.0, 10.0]
    pos, s = aggregate(qidx, group, score, first, "firstp")
    assert pos.tolist() == [1, 2, 3]


def test_rerankers_after_to_docs_score_each_document_by_its_best_passage(pidx: cascade.Index) -> None:
    from cascade.rerank.base import index_numbers

    docs = cascade.parse("bm25", index=pidx)(["zebras stripes"])
    assert index_numbers(docs, pidx).tolist() == docs.doc.tolist()


def test_add_update_delete_whole_documents(pidx: cascade.Index) -> None:
    n_before = pidx.n_docs
    with pytest.raises(CascadeError, match="'a' is already in"):
        pidx.add([long_doc("a", "again")])
    assert pidx.add([cascade.Doc("d", "A short new document about zebras.")], merge=False) == 1
    # the new version of a has fewer passages: every old one must go
    assert pidx.update([cascade.Doc("a", "Now a short text without the animal.")], merge=False) == 1
    idx = pidx.refresh()
    assert sorted(i for i in (d.id for d in idx) if parent_id(i) == "a") == ["a#0"]
    assert idx.n_docs == n_before - pidx.get("a#0").meta["_passage"]["count"] + 1 + 1
    hits = cascade.parse("bm25", index=idx)(["zebras stripes"]).hits(0)
    assert sorted(h.id for h in hits) == ["b#2", "d"]
    assert idx.delete(["b#2", "missing"]) == 1
    idx = idx.refresh()
    assert not any(parent_id(d.id) == "b#2" for d in idx)
    assert idx.delete(where="year = 2020") == 0  # a (updated, no year) and d have none; b#2 went
    idx.optimize()
    idx = idx.refresh()
    assert len(idx.segments) == 1 and sorted(d.id for d in idx) == ["a#0", "c#0", "d#0"]
    assert [h.id for h in cascade.parse("bm25", index=idx)(["zebras"]).hits(0)] == ["d"]


def test_delete_by_filter_takes_every_passage(pidx: cascade.Index) -> None:
    assert pidx.delete(where="year = 2020") == 2
    assert [d.id for d in pidx.refresh()] == ["c#0"]


def test_passage_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(CascadeError, match="overlap must be"):
        cascade.Index.build([cascade.Doc("x", "text")], tmp_path / "x", passages={"tokens": 5, "overlap": 5})
    with pytest.raises(CascadeError, match="passages must be"):
        cascade.Index.build([cascade.Doc("x", "text")], tmp_path / "x", passages={"size": 5})
    with pytest.raises(CascadeError, match="reserved"):
        cascade.Index.build([cascade.Doc("x", "text", meta={"_passage": 1})], tmp_path / "x", passages=5)
    with pytest.raises(CascadeError, match="wrap a single document in a list"):
        cascade.Index.build(cascade.Doc("x", "text"), tmp_path / "y", passages=5)


def test_cli_index_search_delete(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text("# Alpha\n\n" + "Filler words here. " * 80 +
                                 "\n\n## Zebras\n\nStripes confuse flies.\n")
    (folder / "b.txt").write_text("Horses and flies.")
    out = tmp_path / "p.idx"
    runner = CliRunner()
    done = runner.invoke(app, ["index", str(folder), "-o", str(out), "--passage-tokens", "60",
                               "--passage-overlap", "10"])
    assert done.exit_code == 0, done.output
    assert "2 documents as" in done.output
    found = runner.invoke(app, ["search", str(out), "stripes flies", "--json"])
    assert [h["id"] for h in json.loads(found.stdout)["hits"]] == ["a.md", "b.txt"]
    assert json.loads(found.stdout)["hits"][0]["title"] == "Alpha > Zebras"
    found = runner.invoke(app, ["search", str(out), "stripes flies", "--json", "--passages"])
    assert json.loads(found.stdout)["hits"][0]["id"].startswith("a.md#")
    found = runner.invoke(app, ["search", str(out), "stripes flies", "--json", "-p", "bm25 >> to_docs(agg=firstp)"])
    assert [h["id"] for h in json.loads(found.stdout)["hits"]] == ["b.txt"]
    gone = runner.invoke(app, ["delete", str(out), "--id", "a.md"])
    assert gone.exit_code == 0 and "deleted 1 document" in gone.output
    bad = runner.invoke(app, ["index", str(folder), "-o", str(tmp_path / "q"), "--passage-overlap", "5"])
    assert bad.exit_code == 1 and "needs --passage-tokens" in bad.output


def test_no_match_and_get_hint(pidx: cascade.Index) -> None:
    for agg in ("maxp", "firstp", "sum"):
        empty = cascade.parse(f"bm25 >> to_docs(agg={agg})", index=pidx)(["qqqzzx", "zebras"])
        assert empty.hits(0) == [] and len(empty.hits(1)) == (0 if agg == "firstp" else 2)  # zebras: last passages
    with pytest.raises(CascadeError, match="its entries are passages, 'a''s first is 'a#0'"):
        pidx.get("a")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_writes_equal_a_fresh_passage_build(tmp_path: Path, seed: int) -> None:
    """After random adds, updates (to longer and shorter versions), deletes and merges, the
    passage index holds exactly the passages of a fresh build of the live documents, and BM25
    over documents scores the same."""
    rng = np.random.default_rng(seed)
    vocab = ["alpha", "beta", "gamma", "delta", "zebra", "stripe", "tea", "leaf", "tin", "storage"]

    def doc(i: int) -> cascade.Doc:
        sentences = [" ".join(rng.choice(vocab, size=rng.integers(3, 9))) + "." for _ in range(rng.integers(1, 25))]
        return cascade.Doc(f"d{i}", "# Head\n\n" + " ".join(sentences), meta={"g": int(rng.integers(0, 3))})

    settings = {"tokens": 20, "overlap": 5}
    live = {i: doc(i) for i in range(8)}
    idx = cascade.Index.build(live.values(), tmp_path / "w.idx", passages=settings, filter_fields={"g": "int"})
    for step in range(12):
        op = rng.integers(0, 4)
        if op == 0:
            new = {i: doc(i) for i in range(100 + 3 * step, 103 + 3 * step)}
            idx.add(new.values(), merge=False)
            live.update(new)
        elif op == 1 and live:
            picked = rng.choice(sorted(live), size=min(2, len(live)), replace=False).tolist()
            new = {i: doc(i) for i in picked}
            assert idx.update(new.values(), merge=False) == len(picked)
            live.update(new)
        elif op == 2 and live:
            gone = int(rng.choice(sorted(live)))
            assert idx.delete([f"d{gone}"]) == 1
            del live[gone]
        else:
            idx.optimize(policy=cascade.TieredMergePolicy(factor=2))
        idx = idx.refresh()
    fresh = cascade.Index.build(live.values(), tmp_path / "fresh.idx", passages=settings)
    assert sorted((d.id, d.title, d.text) for d in idx) == sorted((d.id, d.title, d.text) for d in fresh)
    queries = ["zebra stripe", "tea tin storage", "alpha"]
    got = cascade.parse("bm25", index=idx)(queries).to_run()
    want = cascade.parse("bm25", index=fresh)(queries).to_run()
    assert {q: {d: round(s, 4) for d, s in r.items()} for q, r in got.items()} == \
        {q: {d: round(s, 4) for d, s in r.items()} for q, r in want.items()}


def test_wire_format_shows_documents_by_their_best_passage(pidx: cascade.Index) -> None:
    from cascade.data.wire import candidates_to_wire

    cands = cascade.parse("bm25", index=pidx)([cascade.Query("q1", "zebras stripes")])
    wire = candidates_to_wire([cascade.Query("q1", "zebras stripes")], cands, pidx.docs_by_id)
    first = wire[0]["candidates"][0]
    assert first["docid"] == "a" and "Zebras have black stripes." in first["doc"]["segment"]
