"""Acceptance (issue 18): real long documents, answers past token 512, found with passages and
missed without them.

The documents are standard-library modules with every docstring at full length
(``python_module_docs``: 1,200-2,200 words each, i.e. 1,600-3,000 WordPiece tokens). Each query
is the first sentence of a docstring that starts past WordPiece token 512 of its module's
document. MiniLM reads 256 tokens, so a whole-document dense index never sees those sentences,
while a passage index (128 words, 32 overlapping) holds each in some passage: the module comes
first with passages, and not first without them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import cascade
from cascade.data.pydocs import python_module_docs

pytest.importorskip("sentence_transformers", reason="needs the neural extra (dense retrieval with MiniLM)")
tokenizers = pytest.importorskip("tokenizers", reason="needs the tokenizers package")

MODULES = ("ssl", "argparse", "socket", "pydoc", "http.client", "smtplib", "ftplib", "imaplib")
QUERIES = {  # module -> the first sentence of a docstring deep inside its document
    "ssl": "Matching according to RFC 6125, section 6.4.3",
    "argparse": "Abstract base class that provides __repr__.",
    "socket": "Convert a numeric family value to an IntEnum member.",
    "pydoc": "Remove the hexadecimal id from a Python object representation.",
}


@pytest.fixture(scope="module")
def corpus() -> list[cascade.Doc]:
    docs = [d for d in python_module_docs() if d.id in MODULES]
    if sorted(d.id for d in docs) != sorted(MODULES):
        pytest.skip("this Python's standard library lacks some of the modules (e.g. ssl without OpenSSL)")
    return docs


def minilm_tokenizer():  # type: ignore[no-untyped-def]
    from cascade.models.resolve import resolve_model

    try:
        location = resolve_model("minilm")
    except cascade.CascadeError as err:
        pytest.skip(f"MiniLM is not installed here: {err}")
    tok = tokenizers.Tokenizer.from_file(os.path.join(location, "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


def test_long_documents_answers_past_token_512(corpus: list[cascade.Doc],
                                               tmp_path_factory: pytest.TempPathFactory) -> None:
    tok = minilm_tokenizer()
    by_id = {d.id: d for d in corpus}
    for module, query in QUERIES.items():
        text = by_id[module].text
        at = text.find(query)
        assert at > 0, f"{query!r} is not in {module}'s docstrings any more"
        assert len(tok.encode(text[:at]).ids) > 512, f"{module}: the answer starts before WordPiece token 512"
    assert all(len(tok.encode(d.text).ids) > 1500 for d in corpus)

    root = Path(tmp_path_factory.mktemp("long"))
    whole = cascade.Index.build(corpus, root / "whole.idx")
    parts = cascade.Index.build(corpus, root / "passages.idx", passages={"tokens": 128, "overlap": 32})
    assert parts.n_docs > 10 * len(corpus)
    queries = [cascade.Query(m, q) for m, q in QUERIES.items()]
    without = cascade.parse("dense(model=minilm) % 10", index=whole)(queries).to_run()
    with_passages = cascade.parse("dense(model=minilm) % 200", index=parts)(queries).to_run()

    for module in QUERIES:
        assert list(with_passages[module])[0] == module, (module, list(with_passages[module])[:3])
        assert list(without[module])[0] != module, (module, list(without[module])[:3])
    # the document is shown by its best passage, which lies where a whole-document encoder never reads
    best = cascade.parse("dense(model=minilm) % 200", index=parts)([queries[0]]).hits(0)[0]
    assert best.id == "ssl" and best.meta["_passage"]["doc"] == "ssl" and best.text in by_id["ssl"].text
    assert len(tok.encode(by_id["ssl"].text[:best.meta["_passage"]["start"]]).ids) > 512
