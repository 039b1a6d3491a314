"""Property tests for bad input: readers, the filter language, pipeline strings with filters,
and damaged index files. Every failure must be a CascadeError with a message, never a crash
and never a silent wrong result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cascade
from cascade.core.errors import BadIndexError, CascadeError, DataError
from cascade.core.types import Doc
from cascade.data import read_jsonl_docs
from cascade.filters import parse_filter
from cascade.index.index import Index
from cascade.index.manifest import MANIFEST_NAME

FIELDS = {"year": "int", "lang": "keyword", "score": "float", "day": "date"}
FILTER_PIECES = ["year", "lang", "score", "day", "nope", " ", "=", "==", "!=", "<", "<=", ">", ">=", "(", ")",
                 ",", "AND", "or", "NOT", "in", "2020", "-1.5e3", '"en"', "'de'", '"2021-01-01"', '"x', "1" * 30,
                 "\\", "é", "\x00", "IN (", "9" * 5000]
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Index:
    docs = [Doc(f"d{i}", f"w{i % 3} w{i % 5}", meta={"year": 2000 + i, "lang": "en" if i % 2 else "de",
                                                      "score": i / 3, "day": f"2021-01-{1 + i:02d}"})
            for i in range(12)]
    return Index.build(docs, tmp_path_factory.mktemp("bad") / "tiny", filter_fields=FIELDS)


@SETTINGS
@given(text=st.one_of(st.lists(st.sampled_from(FILTER_PIECES), max_size=12).map(" ".join), st.text(max_size=40)))
def test_filter_strings_parse_or_raise_a_cascade_error(tiny: Index, text: str) -> None:
    try:
        expr = parse_filter(text, FIELDS)
    except CascadeError as err:
        assert str(err)
        return
    masks = tiny.allowed_docs(expr)  # a filter that parses evaluates, and prints back the same
    assert [None if m is None else m.tolist() for m in tiny.allowed_docs(str(expr))] == \
        [None if m is None else m.tolist() for m in masks]


@SETTINGS
@given(where=st.lists(st.sampled_from(FILTER_PIECES), max_size=8).map(" ".join),
       quote=st.sampled_from(['"', "'"]))
def test_pipeline_strings_with_filters_parse_or_raise_a_cascade_error(tiny: Index, where: str, quote: str) -> None:
    escaped = where.replace("\\", "\\\\").replace(quote, "\\" + quote)
    text = f"bm25(where={quote}{escaped}{quote}, k=5) % 3"
    try:
        pipeline = cascade.parse(text, index=tiny)
    except CascadeError as err:
        assert str(err)
        return
    compiled = pipeline.compile()
    assert isinstance(compiled, cascade.BM25) and compiled.k == 3  # the cutoff went into the search
    hits = pipeline.search([cascade.Query("q", "w1 w2")]).to_run()["q"]
    allowed = set(tiny.doc_ids(tiny.allowed_numbers(compiled.filter)))
    assert len(hits) <= 3 and set(hits) <= allowed  # a filtered search returns only matching documents


@SETTINGS
@given(lines=st.lists(st.one_of(
    st.binary(max_size=60),
    st.fixed_dictionaries({"_id": st.one_of(st.text(max_size=5), st.integers(), st.none(), st.booleans()),
                           "text": st.one_of(st.text(max_size=20), st.integers(), st.none()),
                           "metadata": st.one_of(st.none(), st.dictionaries(st.sampled_from(["year", "lang"]),
                                                                            st.one_of(st.integers(), st.text(
                                                                                max_size=6), st.floats())))
                           }).map(lambda d: json.dumps(d).encode())), max_size=8))
def test_jsonl_reader_yields_docs_or_raises_a_data_error(tmp_path_factory: pytest.TempPathFactory,
                                                         lines: list[bytes]) -> None:
    path = tmp_path_factory.mktemp("jsonl") / "docs.jsonl"
    path.write_bytes(b"\n".join(line.replace(b"\n", b" ") for line in lines))
    try:
        docs = list(read_jsonl_docs(path))
    except DataError as err:
        assert str(err).startswith(str(path))
        return
    assert all(isinstance(d, Doc) and d.id and (d.text.strip() or d.title.strip()) for d in docs)
    assert len({d.id for d in docs}) == len(docs)
    # indexing them with declared filter fields: a clean index or one clear error
    if docs:
        try:
            idx = Index.build(docs, path.parent / "idx", filter_fields={"year": "int", "lang": "keyword"})
        except CascadeError as err:
            assert "filter field" in str(err)
            return
        assert idx.n_docs == len(docs) and idx.verify() == []


@pytest.fixture
def small_index(tmp_path: Path) -> Path:
    root = tmp_path / "i"
    idx = Index.build([Doc(f"d{i}", f"w{i}", meta={"year": i}) for i in range(20)], root,
                      filter_fields={"year": "int"})
    idx.delete(["d3", "d4"])
    idx.close()
    return root


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_files_are_named_on_open(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    root = tmp_path_factory.mktemp("dmg") / "i"
    idx = Index.build([Doc(f"d{i}", f"w{i} w{i % 4}", meta={"year": i}) for i in range(20)], root,
                      filter_fields={"year": "int"})
    idx.delete(["d3", "d4"])
    files = sorted(p for p in (root / "seg-000001").iterdir())
    victim = data.draw(st.sampled_from(files))
    content = bytearray(victim.read_bytes())
    how = data.draw(st.sampled_from(["flip", "truncate", "append"]))
    if how == "flip":
        at = data.draw(st.integers(0, len(content) - 1))
        content[at] ^= data.draw(st.integers(1, 255))
    elif how == "truncate":
        del content[data.draw(st.integers(0, len(content) - 1)):]
    else:
        content += data.draw(st.binary(min_size=1, max_size=9))
    victim.write_bytes(bytes(content))
    with pytest.raises(BadIndexError, match=victim.name):
        Index.open(root)


@SETTINGS
@given(edit=st.sampled_from(["n_docs", "n_deleted", "deletes", "segments", "name", "files", "garble", "generation"]),
       value=st.one_of(st.integers(-5, 50), st.text(max_size=8), st.none(), st.lists(st.integers(), max_size=2)))
def test_edited_manifests_fail_with_bad_index_error(small_index: Path, edit: str, value: object) -> None:
    path = small_index / MANIFEST_NAME
    original = path.read_bytes()
    data = json.loads(original)
    seg = data["segments"][0]
    if edit == "segments":
        if value == []:
            return  # a valid manifest: the empty index left after deleting everything
        data["segments"] = value
    elif edit == "garble":
        path.write_bytes(original[: len(original) // 2])
        data = None
    elif edit == "generation":
        data["generation"] = value
    else:
        seg[edit] = value
    if data is not None:
        path.write_text(json.dumps(data))
    try:
        idx = Index.open(small_index)
    except BadIndexError as err:
        assert str(err)
    else:  # accepted: then it must still be the same, consistent index
        assert sorted(d.id for d in idx) == sorted(f"d{i}" for i in range(20) if i not in (3, 4))
        assert idx.n_docs == 18 and idx.verify() == []
        idx.close()
    finally:
        path.write_bytes(original)


@pytest.mark.parametrize("depth", [150, 100_000])
def test_deeply_nested_json_is_a_bad_record_not_a_recursion_error(tmp_path: Path, depth: int) -> None:
    from typer.testing import CliRunner

    from cascade.cli import app
    from cascade.core.types import ReadReport

    path = tmp_path / "deep.jsonl"
    nested = "[" * depth + "]" * depth
    path.write_text('{"_id": "a", "text": "fine"}\n'
                    f'{{"_id": "b", "text": "x", "metadata": {{"m": {nested}}}}}\n'
                    '{"_id": "c", "text": "fine too", "metadata": {"m": [[[1]]]}}\n')
    with pytest.raises(DataError, match=r"deep.jsonl:2: JSON nested more than 100 levels deep"):
        list(read_jsonl_docs(path))
    report = ReadReport()
    assert [d.id for d in read_jsonl_docs(path, skip_bad=True, report=report)] == ["a", "c"]
    assert report.skipped == 1 and "deep.jsonl:2" in report.problems[0]
    result = CliRunner().invoke(app, ["index", str(path), "-o", str(tmp_path / "i"), "--skip-bad"])
    assert result.exit_code == 0 and "Traceback" not in result.output and "deep.jsonl:2" in result.output
    assert Index.open(tmp_path / "i").n_docs == 2
