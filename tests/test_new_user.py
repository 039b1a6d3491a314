"""What a new user hits (issue 13): messages, a base install, offline hubs, the Python API.

Each test fails on the behaviour the issue describes. No test touches the network: the hub
probe is pointed at a closed or a listening localhost port, and hub loaders are stand-ins.
"""

from __future__ import annotations

import gzip
import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import cascade
from cascade.cli import app
from cascade.core.errors import CascadeError, MissingDependency
from cascade.index.index import Index
from cascade.index.lock import WriterBusy, writer_lock
from cascade.models import resolve
from cascade.retrieve.bm25 import BM25

runner = CliRunner()
DOCS = [
    {"_id": "d1", "title": "Solar power", "text": "Solar panels convert sunlight into electricity."},
    {"_id": "d2", "title": "Wind power", "text": "Wind turbines generate electricity from moving air."},
    {"_id": "d3", "title": "Cooking", "text": "Boil the pasta in salted water."},
]
OPTIONAL = ("torch", "sentence_transformers", "transformers", "faiss", "threadpoolctl", "onnxruntime", "tokenizers")


def invoke(*args: object, **kwargs: Any):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args], **kwargs)


def error_line(result) -> str:  # type: ignore[no-untyped-def]
    """The one `error: ...` line of a failed command (exit 1, no traceback)."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def built(tmp_path: Path) -> Path:
    out = tmp_path / "docs.idx"
    result = invoke("index", write_jsonl(tmp_path / "docs.jsonl", DOCS), "-o", out)
    assert result.exit_code == 0, result.output
    return out


# -- 1. counts and ids that match nothing ----------------------------------------------------


def test_delete_of_an_unknown_id_fails_and_names_it(built: Path) -> None:
    line = error_line(invoke("delete", built, "--id", "nosuchdoc"))
    assert "no live document with id 'nosuchdoc'" in line and "nothing deleted" in line
    assert Index.open(built).n_docs == 3


def test_delete_says_which_ids_were_missing_and_counts_in_the_singular(built: Path) -> None:
    result = invoke("delete", built, "--id", "d1", "--id", "nope", "--id", "gone")
    assert result.exit_code == 0, result.output
    assert "no live documents with ids 'nope', 'gone'" in result.stderr
    assert "deleted 1 document from" in result.stderr
    again = invoke("delete", built, "--id", "d1")  # already deleted: no live document
    assert "no live document with id 'd1'" in error_line(again)


def test_delete_by_a_filter_that_matches_nothing_is_not_an_error(tmp_path: Path) -> None:
    index = tmp_path / "f.idx"
    rows = [dict(r, year=2000 + i) for i, r in enumerate(DOCS)]
    assert invoke("index", write_jsonl(tmp_path / "y.jsonl", rows), "-o", index, "--filter-field",
                  "year:int").exit_code == 0
    result = invoke("delete", index, "--where", "year > 3000")
    assert result.exit_code == 0 and "deleted 0 documents" in result.stderr and "matches --where" in result.stderr


def test_add_counts_in_the_singular(built: Path, tmp_path: Path) -> None:
    result = invoke("add", built, write_jsonl(tmp_path / "one.jsonl", [{"_id": "d9", "text": "solar again"}]))
    assert result.exit_code == 0 and "added 1 document to" in result.stderr, result.output
    assert "1 documents" not in result.stderr


# -- 2. a base install: every optional library missing -----------------------------------------


@pytest.fixture
def base_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Import of every optional library fails, as with only the base dependencies installed."""
    for name in OPTIONAL:
        monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.parametrize("args", [
    ["search", "{idx}", "solar", "-p", "bm25 % 10 >> maxsim"],
    ["search", "{idx}", "solar", "-p", "dense"],
    ["search", "{idx}", "solar", "-p", "dense(method=hnsw)"],
    ["search", "{idx}", "solar", "-p", "sparse"],
    ["search", "{idx}", "solar", "-p", "bm25 >> dense_rerank"],
    ["encode", "{idx}"],
    ["encode", "{idx}", "--kind", "sparse"],
])
def test_a_base_install_names_the_extra_to_install(built: Path, base_install: None, args: list[str]) -> None:
    line = error_line(invoke(*(a.format(idx=built) for a in args)))
    assert "pip install 'cascade-ir[neural]'" in line  # the [neural] survives printing


def test_every_optional_import_raises_missing_dependency(base_install: None) -> None:
    from cascade.models.encoders import Encoder
    from cascade.retrieve.hnsw import build_graph

    with pytest.raises(MissingDependency, match=r"torch is needed.*cascade-ir\[neural\]"):
        resolve.load_sentence_transformer("/nonexistent/model")
    with pytest.raises(MissingDependency, match=r"torch is needed.*cascade-ir\[neural\]"):
        resolve.load_transformers("/nonexistent/model", "ForMaskedLM")
    with pytest.raises(MissingDependency, match=r"torch is needed.*cascade-ir\[neural\]"):
        Encoder("minilm").encode(["text"])
    with pytest.raises(MissingDependency, match=r"faiss-cpu is needed.*cascade-ir\[neural\]"):
        build_graph(__import__("numpy").zeros((2, 4), "float32"))


def test_sentence_transformers_missing_with_torch_present(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(MissingDependency, match=r"sentence-transformers is needed.*cascade-ir\[neural\]"):
        resolve.load_sentence_transformer("/nonexistent/model")
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(MissingDependency, match=r"transformers is needed.*cascade-ir\[neural\]"):
        resolve.load_transformers("/nonexistent/model", "ForSequenceClassification")


def test_maxsim_runs_without_threadpoolctl(tiny_bi_encoder: str, monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    """threadpoolctl only limits BLAS threads; an ONNX-only install has none, and MaxSim still runs."""
    index = Index.build([cascade.Doc("a", "cats purr"), cascade.Doc("b", "dogs bark at cats")], tmp_path / "m.idx")
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)
    run = cascade.parse(f"bm25 % 10 >> maxsim(model={tiny_bi_encoder})", index=index).search("cats").to_run()
    assert set(run["0"]) == {"a", "b"}


def test_hnsw_without_faiss_names_the_extra(tiny_bi_encoder: str, monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    index = Index.build([cascade.Doc("a", "cats purr"), cascade.Doc("b", "dogs bark")], tmp_path / "h.idx")
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(MissingDependency, match=r"faiss-cpu is needed.*cascade-ir\[neural\]"):
        cascade.parse(f"dense(model={tiny_bi_encoder}, method=hnsw)", index=index).search("cats")


def test_error_text_is_never_read_as_markup(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> None:
        raise CascadeError("[bold]literal[/bold] [neural] [/]")

    monkeypatch.setattr(BM25, "search", boom)
    assert error_line(invoke("search", built, "solar")) == "error: [bold]literal[/bold] [neural] [/]"


def test_documents_with_brackets_print_as_written(tmp_path: Path) -> None:
    rows = [{"_id": "[b]x[/b]", "text": "solar [bold]flare[/] and [/] too"}]
    index = tmp_path / "b.idx"
    assert invoke("index", write_jsonl(tmp_path / "b.jsonl", rows), "-o", index).exit_code == 0
    result = invoke("search", index, "solar [red]")
    assert result.exit_code == 0, result.output
    assert "[b]x[/b]" in result.stdout and "[bold]flare[/]" in result.stdout and "[red]" in result.stdout


# -- 3. offline: a hub id fails at once ---------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once it is closed


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Point the hub probe at localhost (never the network); ask again in each test."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    resolve.hub_online.cache_clear()

    def point(port: int) -> None:
        monkeypatch.setattr(resolve, "hub_address", lambda: ("127.0.0.1", port))

    yield point
    resolve.hub_online.cache_clear()


class FakeLoader:
    """Stands in for SentenceTransformer / from_pretrained: records how it was called; a hub
    id that is not in the local cache fails as the libraries do."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, location: str, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        if kwargs.get("local_files_only"):
            raise OSError(f"We couldn't connect to 'https://huggingface.co' to load the files of {location},\n"
                          "and couldn't find them in the cached files.")
        raise AssertionError("would download from the hub")


def test_the_probe_reports_a_closed_port_offline_and_a_listening_one_online(probe: Any) -> None:
    assert not resolve.reachable(("127.0.0.1", closed_port()), seconds=2)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert resolve.reachable(server.getsockname(), seconds=2)
        probe(server.getsockname()[1])
        assert resolve.hub_online()


def test_hf_hub_offline_needs_no_probe(probe: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(resolve, "reachable", lambda *a, **k: pytest.fail("probed although HF_HUB_OFFLINE=1"))
    assert not resolve.hub_online()
    assert resolve.hub_options("org/name") == {"local_files_only": True}


def test_offline_a_hub_id_fails_at_once_with_the_usual_message(probe: Any, monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    st = pytest.importorskip("sentence_transformers")
    probe(closed_port())
    fake = FakeLoader()
    monkeypatch.setattr(st, "SentenceTransformer", fake)
    with pytest.raises(CascadeError, match="could not load model 'org/name'.*a hub id needs network access"):
        resolve.load_sentence_transformer("org/name")
    assert fake.calls == [{"device": "cpu", "local_files_only": True}]
    local = tmp_path / "model"
    local.mkdir()
    with pytest.raises(AssertionError):  # a directory is loaded as it is, offline or not
        resolve.load_sentence_transformer(str(local))
    assert fake.calls[-1] == {"device": "cpu"}


def test_online_a_hub_id_may_download(probe: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    st = pytest.importorskip("sentence_transformers")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        probe(server.getsockname()[1])
        fake = FakeLoader()
        monkeypatch.setattr(st, "SentenceTransformer", fake)
        with pytest.raises(AssertionError, match="would download"):
            resolve.load_sentence_transformer("org/name")
    assert fake.calls == [{"device": "cpu"}]


def test_offline_cross_encoder_on_the_cli_is_one_line(built: Path, probe: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    transformers = pytest.importorskip("transformers")
    probe(closed_port())
    fake = FakeLoader()
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", fake)
    result = invoke("search", built, "solar", "-p", "bm25 >> cross_encoder(model=cross-encoder/ms-marco-MiniLM-L-6-v2)")
    line = error_line(result)
    assert "could not load model 'cross-encoder/ms-marco-MiniLM-L-6-v2'" in line and "network access" in line
    assert fake.calls == [{"local_files_only": True}]


def test_a_misspelt_alias_gets_a_suggestion(probe: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    st = pytest.importorskip("sentence_transformers")
    probe(closed_port())
    monkeypatch.setattr(st, "SentenceTransformer", FakeLoader())
    with pytest.raises(CascadeError, match="did you mean the alias 'minilm'"):
        resolve.load_sentence_transformer("minlm")


# -- 4. the Python API ------------------------------------------------------------------------


def test_a_pipeline_is_called_on_plain_strings(tmp_path: Path) -> None:
    index = Index.build([cascade.Doc(r["_id"], r["text"], r["title"]) for r in DOCS], tmp_path / "p.idx")
    pipeline = cascade.parse("bm25 % 2", index=index)
    called = pipeline(["solar electricity", "pasta water"]).to_run()
    assert called == pipeline.search(["solar electricity", "pasta water"]).to_run()
    assert list(called) == ["0", "1"] and next(iter(called["1"])) == "d3"
    assert pipeline("pasta").to_run() == pipeline.search("pasta").to_run()


def test_build_add_and_update_take_dicts(tmp_path: Path) -> None:
    index = Index.build([{"_id": "a", "text": "cats purr", "title": "Cats", "year": 2020},
                         {"id": "b", "text": "dogs bark", "metadata": {"lang": "en"}}], tmp_path / "d.idx",
                        filter_fields={"year": "int"})
    a, b = index.docs_by_id(["a", "b"])
    assert (a.title, a.meta, b.meta) == ("Cats", {"year": 2020}, {"lang": "en"})
    assert index.add([{"_id": "c", "text": "a cat"}]) == 1
    assert index.update([{"_id": "a", "text": "now about birds"}]) == 1
    index = index.refresh()
    assert [h.id for h in BM25(index).search("cat")] == ["c"]
    assert index.get("a").text == "now about birds"


@pytest.mark.parametrize("bad,fragment", [
    (cascade.Doc(1, "x"), "documents[1]: Doc.id must be a string, got int"),  # type: ignore[arg-type]
    (cascade.Doc("x", None), "documents[1]: Doc.text must be a string, got NoneType"),  # type: ignore[arg-type]
    (cascade.Doc("", "x"), "documents[1]: Doc.id must not be empty"),
    ({"text": "no id"}, "documents[1]: a document dict needs an \"_id\" or \"id\""),
    ({"_id": "x"}, "documents[1] (id 'x'): no \"text\""),
    ({"_id": 7, "text": "x"}, "documents[1]: _id must be a non-empty string, got int"),
    ("just a string", "documents[1]: expected a cascade.Doc or a dict"),
])
def test_a_bad_record_is_named_by_its_position_at_once(tmp_path: Path, bad: Any, fragment: str) -> None:
    pulled = []

    def docs() -> Any:
        for i, record in enumerate([cascade.Doc("ok", "fine"), bad, cascade.Doc("later", "never read")]):
            pulled.append(i)
            yield record

    with pytest.raises(CascadeError) as err:
        Index.build(docs(), tmp_path / "bad.idx")
    assert fragment in str(err.value)
    assert pulled == [0, 1]  # stopped at the first bad record
    assert not (tmp_path / "bad.idx").exists()


def test_one_document_instead_of_a_list_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CascadeError, match="wrap a single document in a list"):
        Index.build(cascade.Doc("a", "text"), tmp_path / "one.idx")


def test_an_index_without_a_path_lives_until_the_interpreter_exits(tmp_path: Path) -> None:
    index = cascade.Index.build([cascade.Doc("a", "hello world"), {"_id": "b", "text": "goodbye"}])
    assert [h.id for h in cascade.BM25(index).search("hello")] == ["a"]
    assert index.path.is_dir()
    script = ("import cascade; i = cascade.Index.build([cascade.Doc('a', 'hello')]); "
              "print(i.path); print(cascade.BM25(i).search('hello')[0].id)")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    path, hit = proc.stdout.split()
    assert hit == "a" and not Path(path).exists() and not Path(path).parent.exists()


def test_a_pipeline_over_a_fresh_index_loads_its_model_once(tiny_bi_encoder: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from cascade.models import encoders

    monkeypatch.setattr(encoders, "_SHARED", {})
    monkeypatch.setattr(encoders, "_QUERIES", {})
    loads = []
    real = encoders.load_sentence_transformer
    monkeypatch.setattr(encoders, "load_sentence_transformer", lambda *a, **k: loads.append(a) or real(*a, **k))
    docs = [cascade.Doc("1", "cats purr in the garden"), cascade.Doc("2", "dogs bark at night"),
            cascade.Doc("3", "fish swim in water")]
    index = cascade.Index.build(docs, tmp_path / "n.idx")
    pipeline = cascade.parse(f"rrf(bm25, dense(model={tiny_bi_encoder})) % 100 >> maxsim(model={tiny_bi_encoder}) % 2",
                             index=index)
    assert len(pipeline.search("cats in the garden").to_run()["0"]) == 2
    assert len(loads) == 1  # documents and queries share one loaded model


# -- 5. smaller things ------------------------------------------------------------------------


def test_writer_busy_speaks_cli_on_the_cli_and_python_in_python(built: Path, tmp_path: Path) -> None:
    more = write_jsonl(tmp_path / "more.jsonl", [{"_id": "d8", "text": "more"}])
    with writer_lock(built):
        for args in (("add", built, more), ("delete", built, "--id", "d1"), ("optimize", built)):
            line = error_line(invoke(*args))
            assert "another writer" in line and "--wait SECONDS" in line and "wait=SECONDS" not in line
        with pytest.raises(WriterBusy, match="wait=SECONDS"):
            Index.open(built).add([cascade.Doc("d8", "more")])


def test_a_long_query_is_shortened_in_the_table_title(built: Path) -> None:
    query = "solar " * 20_000
    result = invoke("search", built, query)
    assert result.exit_code == 0, result.output
    assert len(result.stdout) < 5_000 and "…" in result.stdout and "d1" in result.stdout


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"cascade {cascade.__version__}"


def test_search_json_has_rank_title_text_and_meta(tmp_path: Path) -> None:
    index = tmp_path / "j.idx"
    rows = [{"_id": "d1", "title": "Solar", "text": "solar panels", "year": 2020}]
    assert invoke("index", write_jsonl(tmp_path / "j.jsonl", rows), "-o", index).exit_code == 0
    hit = json.loads(invoke("search", index, "solar", "--json").stdout)["hits"][0]
    assert hit == {"rank": 1, "id": "d1", "score": hit["score"], "title": "Solar", "text": "solar panels",
                   "meta": {"year": 2020}}


def test_search_with_a_pipeline_honours_k1_and_b(built: Path) -> None:
    def scores(*extra: str) -> list[float]:
        result = invoke("search", built, "solar electricity", "--json", *extra)
        assert result.exit_code == 0, result.output
        return [h["score"] for h in json.loads(result.stdout)["hits"]]

    tuned = scores("--k1", "2.0", "--b", "1.0")
    assert tuned != scores()
    assert scores("-p", "bm25", "--k1", "2.0", "--b", "1.0") == tuned  # was silently the default k1, b


def test_demo_says_how_to_search_its_index_again(tmp_path: Path) -> None:
    result = invoke("demo", "-q", "json", "-k", "1", "-o", tmp_path / "demo.idx")
    assert result.exit_code == 0, result.output
    assert f"cascade search {tmp_path / 'demo.idx'} json" in result.stdout


def test_index_and_add_read_gzip_tsv_and_stdin(tmp_path: Path) -> None:
    gz = tmp_path / "docs.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in DOCS))
    index = tmp_path / "g.idx"
    result = invoke("index", gz, "-o", index)
    assert result.exit_code == 0 and "indexed 3 documents" in result.stderr, result.output
    tsv = tmp_path / "more.tsv"
    tsv.write_text("id\ttitle\ttext\nt1\tTides\tThe moon moves the sea\nt2\t\tsolar wind\n", encoding="utf-8")
    result = invoke("add", index, tsv)
    assert result.exit_code == 0 and "added 2 documents" in result.stderr, result.output
    result = invoke("add", index, "-", input=json.dumps({"_id": "s1", "text": "piped solar text"}) + "\n")
    assert result.exit_code == 0 and "added 1 document to" in result.stderr, result.output
    idx = Index.open(index)
    assert idx.n_docs == 6 and idx.get("t1").title == "Tides" and idx.get("s1").text == "piped solar text"


def test_bad_stdin_and_tsv_lines_are_named(tmp_path: Path, built: Path) -> None:
    line = error_line(invoke("add", built, "-", input='{"_id": "x", "text": "ok"}\n{oops\n'))
    assert line.startswith("error: <stdin>:2: malformed JSON")
    tsv = tmp_path / "bad.tsv"
    tsv.write_text("a\tTitle\tText\nb\tonly two\n", encoding="utf-8")
    assert f"{tsv}:2: expected 3 tab-separated columns" in error_line(invoke("index", tsv, "-o", tmp_path / "t.idx"))
