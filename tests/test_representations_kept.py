"""Nothing drops a stored representation (issue 14): adds encode their new documents in their own
commit, merges (optimize, and the tiered policy after adds) carry concatenable kinds and rebuild
derived ones, a process that cannot build one refuses the write, and an encoding commits segment
by segment. So a search after add + optimize commits nothing and encodes nothing."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")

from conftest import TINY_WORDS as WORDS  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import cascade  # noqa: E402
from cascade.cli import app  # noqa: E402
from cascade.core.errors import CascadeError  # noqa: E402
from cascade.index import representations as reps  # noqa: E402
from cascade.index.debris import find_debris  # noqa: E402
from cascade.models import encoders, stored  # noqa: E402
from cascade.models.stored import encode_biencoder, representation_name  # noqa: E402


def _docs(n: int, seed: int = 0, prefix: str = "d") -> list[cascade.Doc]:
    rng = random.Random(seed)
    return [cascade.Doc(f"{prefix}{i}", " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12))))
            for i in range(n)]


QUERIES = [cascade.Query(f"q{i}", text) for i, text in
           enumerate(["cats purr loudly", "fish swim in water", "birds fly in the sky", "mice eat cheese"])]


def _pipelines(model: str) -> list[str]:
    return [f"dense(model={model}, k=50)", f"dense(model={model}, k=50, method=hnsw, ef=64)",
            f"bm25 % 30 >> maxsim(model={model}, prune=true)"]


def _search(idx: cascade.Index, model: str) -> list[dict]:
    return [cascade.parse(text, index=idx).search(QUERIES).to_run() for text in _pipelines(model)]


def _assert_every_representation_everywhere(idx: cascade.Index) -> None:
    assert reps.missing(idx) == [] and idx.verify() == [] and find_debris(idx.path) == []
    for name in idx.manifest.representations:
        assert reps.has(idx, name), name


def _same_runs(got: list[dict], want: list[dict]) -> None:
    for got_run, want_run in zip(got, want):
        for qid, docs in want_run.items():
            assert got_run[qid].keys() == docs.keys()
            for doc_id, score in docs.items():
                assert got_run[qid][doc_id] == pytest.approx(score, abs=1e-5)


def _no_encoding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encoders.Encoder, "encode", lambda *a, **k: pytest.fail("encoded during the search"))


def _stored(model: str, path: Path, docs: list[cascade.Doc]) -> cascade.Index:
    """An encoded index whose searches stored an HNSW graph and MaxSim bounds too (and whose
    query encodings the process now holds)."""
    idx = encode_biencoder(cascade.Index.build(docs, path), model)
    _search(idx, model)
    idx = idx.refresh()
    name = representation_name(model)
    assert set(idx.manifest.representations) == {name, f"{name}_hnsw", f"{name}_bounds32"}
    return idx


def test_a_search_after_add_and_optimize_commits_nothing_and_encodes_nothing(
        tiny_bi_encoder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = _docs(60, 1)
    idx = _stored(tiny_bi_encoder, tmp_path / "i.idx", docs[:40])
    idx.add(docs[40:], merge=False)
    idx.delete(["d3", "d44"])
    idx.optimize()
    latest = idx.refresh()
    assert len(latest.segments) == 1 and latest.n_docs == 58
    _assert_every_representation_everywhere(latest)
    live = [d for d in docs if d.id not in ("d3", "d44")]
    want = _search(_stored(tiny_bi_encoder, tmp_path / "fresh.idx", live), tiny_bi_encoder)
    _no_encoding(monkeypatch)
    got = _search(cascade.Index.open(tmp_path / "i.idx"), tiny_bi_encoder)
    assert latest.refresh().generation == latest.generation  # nothing committed
    _same_runs(got[:1] + got[2:], want[:1] + want[2:])  # exact dense and MaxSim: a fresh build's scores
    for run in got[1]:  # HNSW on a toy collection: its top results are exact dot products
        assert len(got[1][run]) == 50


def test_the_merge_policy_after_adds_keeps_every_representation(tiny_bi_encoder: str, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    docs = _docs(24, 2)
    idx = _stored(tiny_bi_encoder, tmp_path / "p.idx", docs[:3])
    for i in range(7):  # the seventh add fills tier 0 with 8 segments: the policy merges them
        idx.add(docs[3 + 3 * i: 6 + 3 * i])
    latest = idx.refresh()
    assert len(latest.segments) == 1 and latest.n_docs == 24
    _assert_every_representation_everywhere(latest)
    _no_encoding(monkeypatch)
    _search(latest, tiny_bi_encoder)
    assert latest.refresh().generation == latest.generation


def test_merged_vectors_are_those_of_their_documents(tiny_bi_encoder: str, tmp_path: Path) -> None:
    docs = _docs(50, 3)
    idx = encode_biencoder(cascade.Index.build(docs[:30], tmp_path / "m.idx"), tiny_bi_encoder)
    idx.add(docs[30:], merge=False)
    idx.update([cascade.Doc("d5", "cats and dogs in the garden")], merge=False)
    idx.optimize()
    merged = idx.refresh()
    name = representation_name(tiny_bi_encoder)
    seg = merged.segments[0]
    texts = [d.text for d in seg.docstore.get(range(seg.n_docs))]
    want = encoders.Encoder(tiny_bi_encoder).encode(texts, tokens=True)
    np.testing.assert_allclose(reps.load(seg, name, "dense"), want.dense, atol=1e-5)
    assert np.array_equal(reps.load(seg, name, "tok_offsets"), want.token_offsets)
    np.testing.assert_allclose(np.asarray(reps.load(seg, name, "tok_vectors"), np.float32),
                               want.token_vectors.astype(np.float32), atol=2e-3)


def _missing_module(monkeypatch: pytest.MonkeyPatch, module: object, absent: str) -> None:
    from importlib.util import find_spec

    monkeypatch.setattr(module, "find_spec", lambda name: None if name == absent else find_spec(name))


def test_a_write_that_cannot_build_a_representation_is_refused(tiny_bi_encoder: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from cascade.retrieve import hnsw

    docs = _docs(40, 4)
    idx = _stored(tiny_bi_encoder, tmp_path / "r.idx", docs[:20])
    idx.add(docs[20:30], merge=False)
    idx = idx.refresh()
    name = representation_name(tiny_bi_encoder)
    _missing_module(monkeypatch, stored, "torch")  # as in a process without the neural extra
    with pytest.raises(CascadeError, match=rf"adding documents to .* needs representation '{name}' \(kind "
                                           r"biencoder\) .*torch is not installed \(pip install 'cascade-ir\[neural\]'\)"
                                           r"; nothing was changed") as err:
        idx.add(docs[30:])
    assert "\n" not in str(err.value)
    assert idx.refresh().generation == idx.generation and find_debris(idx.path) == []
    # merging needs no model when every segment has the vectors: they are carried
    _missing_module(monkeypatch, hnsw, "faiss")
    with pytest.raises(CascadeError, match=rf"merging .* needs representation '{name}_hnsw' \(kind hnsw\) .*faiss"):
        idx.optimize()  # a derived kind is rebuilt for the merged segment: it needs its builder
    assert idx.refresh().generation == idx.generation and find_debris(idx.path) == []
    monkeypatch.undo()
    _missing_module(monkeypatch, stored, "torch")
    idx.optimize()
    _assert_every_representation_everywhere(idx.refresh())


def test_an_encoding_commits_per_segment_and_the_next_one_continues(tiny_bi_encoder: str, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    docs = _docs(45, 5)
    idx = cascade.Index.build(docs[:20], tmp_path / "e.idx")
    idx.add(docs[20:35], merge=False)
    idx.add(docs[35:], merge=False)
    idx = idx.refresh()
    seen: list[int] = []
    original = encoders.Encoder.encode

    def failing_second(self, texts, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(len(texts))
        if len(seen) == 2:
            raise RuntimeError("killed")
        return original(self, texts, **kwargs)

    monkeypatch.setattr(encoders.Encoder, "encode", failing_second)
    with pytest.raises(RuntimeError, match="killed"):
        encode_biencoder(idx, tiny_bi_encoder)
    partial = idx.refresh()
    name = representation_name(tiny_bi_encoder)
    assert partial.generation == idx.generation + 1 and [reps.has_rep(s, name) for s in partial.segments] == \
        [True, False, False]  # the first segment's work is committed
    assert find_debris(partial.path) == [] and partial.verify() == []
    checked = CliRunner().invoke(app, ["check", str(partial.path)])
    assert checked.exit_code == 0 and f"representation '{name}' is missing from some segments" in checked.output
    seen.clear()
    monkeypatch.setattr(encoders.Encoder, "encode", lambda self, texts, **kw: seen.append(len(texts)) or
                        original(self, texts, **kw))
    result = CliRunner().invoke(app, ["encode", str(partial.path)])  # no model: complete what is stored
    assert result.exit_code == 0, result.output
    assert seen == [15, 10] and f"stored {name}" in result.output  # only the segments that lacked it
    done = partial.refresh()
    assert done.generation == partial.generation + 2
    _assert_every_representation_everywhere(done)
    again = CliRunner().invoke(app, ["encode", str(partial.path)])
    assert again.exit_code == 0 and "nothing to encode" in again.output


def test_a_merge_encodes_a_segment_that_lacks_a_representation(tiny_bi_encoder: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    docs = _docs(30, 6)
    idx = cascade.Index.build(docs[:20], tmp_path / "l.idx")
    idx.add(docs[20:], merge=False)
    seen: list[int] = []
    original = encoders.Encoder.encode

    def failing_second(self, texts, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(len(texts))
        if len(seen) == 2:
            raise RuntimeError("killed")
        return original(self, texts, **kwargs)

    monkeypatch.setattr(encoders.Encoder, "encode", failing_second)
    with pytest.raises(RuntimeError):
        encode_biencoder(idx.refresh(), tiny_bi_encoder)
    seen.clear()
    monkeypatch.setattr(encoders.Encoder, "encode", lambda self, texts, **kw: seen.append(len(texts)) or
                        original(self, texts, **kw))
    idx.optimize()
    assert seen == [10]  # only the segment lacking the vectors; the other's are carried
    _assert_every_representation_everywhere(idx.refresh())
