"""Queries encoded by the ONNX export of a sentence-transformers model (cascade.models.onnx_export):
made by the first process that loads the torch model, used by the next without importing torch,
equal to torch's vectors, off with CASCADE_QUERY_ONNX=0, refused for other model layouts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("sentence_transformers")

from cascade.models import encoders, onnx_export  # noqa: E402
from cascade.models.onnx_encoder import OnnxEncoder  # noqa: E402

TEXTS = ["cats purr", "the dogs bark loudly at the cats in the garden", "fish", "zebra unknown words"]


@pytest.fixture
def fresh_queries(monkeypatch: pytest.MonkeyPatch) -> None:
    """No query encoders kept from other tests (they are per process)."""
    monkeypatch.setattr(encoders, "_QUERIES", {})
    monkeypatch.delenv("CASCADE_QUERY_ONNX", raising=False)
    monkeypatch.delenv("CASCADE_DEVICE", raising=False)


def test_first_process_exports_and_the_next_uses_the_export(tiny_bi_encoder: str, fresh_queries: None,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    first = encoders.query_encodings(tiny_bi_encoder)
    assert isinstance(first.encoder, encoders.Encoder)
    torch_encoded = first.encoder.encode(TEXTS, tokens=True)
    want_dense = torch_encoded.dense
    want_tokens = [torch_encoded.tokens_of(i).astype(np.float32) for i in range(len(TEXTS))]
    first_dense = first.dense(TEXTS)  # loads torch, exports, then encodes by the export
    assert isinstance(first.encoder, OnnxEncoder)
    where = onnx_export.export_dir(tiny_bi_encoder)
    info = json.loads((where / "export.json").read_text())
    assert info["ok"] and info["max_length"] == 32 and info["max_dense_difference"] <= onnx_export.TOLERANCE

    monkeypatch.setattr(encoders, "_QUERIES", {})  # as a new process would start
    second = encoders.query_encodings(tiny_bi_encoder)
    assert isinstance(second.encoder, OnnxEncoder)
    assert np.array_equal(second.dense(TEXTS), first_dense)  # the same bits in every process
    np.testing.assert_allclose(second.dense(TEXTS), want_dense, atol=1e-5)
    for got, want in zip(second.tokens(TEXTS), want_tokens):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=2e-3)  # float16 token vectors

    monkeypatch.setattr(encoders, "_QUERIES", {})
    monkeypatch.setenv("CASCADE_QUERY_ONNX", "0")
    assert isinstance(encoders.query_encodings(tiny_bi_encoder).encoder, encoders.Encoder)


def test_a_process_with_the_export_never_imports_torch(tiny_bi_encoder: str, fresh_queries: None,
                                                       cache_dir: Path) -> None:
    encoders.query_encodings(tiny_bi_encoder).load()  # exports
    code = ("import sys; from cascade.models.encoders import query_encodings; "
            f"v = query_encodings({tiny_bi_encoder!r}).dense(['cats purr']); "
            "assert v.shape == (1, 32), v.shape; assert 'torch' not in sys.modules, 'torch imported'")
    env = {**os.environ, "CASCADE_CACHE_DIR": str(cache_dir)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_export_key_follows_the_weights(tiny_bi_encoder: str, tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(tiny_bi_encoder, copy)
    before = onnx_export.export_dir(str(copy))
    weights = next(copy.rglob("model.safetensors"))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert before is not None and onnx_export.export_dir(str(copy)) != before


@pytest.mark.parametrize("change", ["dense layer", "cls pooling", "lower case", "no tokenizer.json"])
def test_other_layouts_are_not_exported(tiny_bi_encoder: str, tmp_path: Path, change: str) -> None:
    copy = tmp_path / "model"
    shutil.copytree(tiny_bi_encoder, copy)
    assert onnx_export.exportable(copy)
    if change == "dense layer":
        modules = json.loads((copy / "modules.json").read_text())
        modules.append({"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"})
        (copy / "modules.json").write_text(json.dumps(modules))
    elif change == "cls pooling":
        pooling = next(copy.glob("1_Pooling/config.json"))
        config = json.loads(pooling.read_text())
        config.update(pooling_mode="cls") if "pooling_mode" in config else config.update(
            pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
        pooling.write_text(json.dumps(config))
    elif change == "lower case":
        config = copy / "sentence_bert_config.json"
        config.write_text(json.dumps({**json.loads(config.read_text()), "do_lower_case": True}))
    else:
        (copy / "tokenizer.json").unlink()
    assert not onnx_export.exportable(copy) and onnx_export.export_dir(str(copy)) is None


def test_a_failed_check_keeps_torch(tiny_bi_encoder: str, fresh_queries: None,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_export, "TOLERANCE", -1.0)  # no export can pass
    encoders.query_encodings(tiny_bi_encoder).load()
    info = json.loads((onnx_export.export_dir(tiny_bi_encoder) / "export.json").read_text())
    assert info["ok"] is False and onnx_export.exported(tiny_bi_encoder) is None
    monkeypatch.setattr(encoders, "_QUERIES", {})
    assert isinstance(encoders.query_encodings(tiny_bi_encoder).encoder, encoders.Encoder)
