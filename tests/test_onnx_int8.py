"""The int8 preparation of an ONNX encoder: NaN guards dropped, weight products made integer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

from cascade.models.onnx_int8 import drop_nan_guards, prepared_int8, weight_matmuls  # noqa: E402

WIDTH = 64  # inputs per product: with 4, each output channel's few weights sit at the int8 extremes,
# and x86 CPUs without VNNI (AVX2 only) saturate such 8-bit products (16-bit intermediate sums);
# an encoder's products are hundreds wide, like this one


def _graph(path: Path) -> None:
    """x [2, WIDTH] @ W [WIDTH, 3] / 8, then softmax, then the exporter's NaN guard, as an ONNX file."""
    rng = np.random.default_rng(0)
    weight = helper.make_tensor("W", TensorProto.FLOAT, [WIDTH, 3],
                                (rng.standard_normal(WIDTH * 3) / 8).astype(np.float32).tolist())
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
             helper.make_node("Softmax", ["h"], ["p"], axis=-1),
             helper.make_node("IsNaN", ["p"], ["nan"]),
             helper.make_node("Where", ["nan", "zero", "p"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, WIDTH])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])], [weight, zero])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_nan_guards_are_dropped_and_weight_products_found(tmp_path: Path) -> None:
    _graph(tmp_path / "g.onnx")
    graph = onnx.load(str(tmp_path / "g.onnx")).graph
    assert weight_matmuls(graph) == ["mm"]
    assert drop_nan_guards(graph) == 0  # the guard writes the graph's output: kept
    model = onnx.load(str(tmp_path / "g.onnx"))
    model.graph.node.append(helper.make_node("Identity", ["y"], ["out"]))
    model.graph.output[0].name = "out"
    assert drop_nan_guards(model.graph) == 1
    assert [n.op_type for n in model.graph.node] == ["MatMul", "Softmax", "Identity"]
    assert model.graph.node[-1].input[0] == "p"


def test_prepared_graph_is_cached_and_close(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASCADE_MODELS_DIR", str(tmp_path / "models"))
    source = tmp_path / "g.onnx"
    _graph(source)
    model = onnx.load(str(source))  # a consumer after the guard (ONNX Runtime would fold an Identity)
    model.graph.initializer.append(helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]))
    model.graph.node.append(helper.make_node("Mul", ["y", "two"], ["out"]))
    model.graph.output[0].name = "out"
    onnx.save(model, str(source))
    first = prepared_int8(source)
    assert first.is_file() and prepared_int8(source) == first  # made once
    ops = [n.op_type for n in onnx.load(str(first)).graph.node]
    assert "IsNaN" not in ops and "Where" not in ops and "MatMul" not in ops  # the product is integer now
    x = np.random.default_rng(1).standard_normal((2, WIDTH)).astype(np.float32)
    run = lambda path: ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]  # noqa: E731
    np.testing.assert_allclose(run(first), run(source), atol=0.05)


def test_a_graph_without_bert_weights_is_not_fused_and_still_prepared(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from cascade.models.onnx_fused_bert import fused_bert

    monkeypatch.setenv("CASCADE_MODELS_DIR", str(tmp_path / "models"))
    _graph(tmp_path / "g.onnx")
    assert fused_bert(onnx.load(str(tmp_path / "g.onnx")), num_heads=4) is None
    prepared = prepared_int8(tmp_path / "g.onnx", num_heads=4)
    ops = [n.op_type for n in onnx.load(str(prepared)).graph.node]
    assert "MatMul" not in ops and "Attention" not in ops


def _packaged_minilm():  # type: ignore[no-untyped-def]
    from cascade.core.errors import MissingDependency
    from cascade.models.onnx_encoder import resolve_onnx

    try:
        return resolve_onnx("minilm-onnx")
    except MissingDependency:
        pytest.skip("the minilm-onnx packages (extra 'models') are not installed")


def _folded(graph: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The packaged graph with its int8 weights folded to float32 and its NaN guards dropped."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(tmp_path / "folded.onnx")
    ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    model = onnx.load(str(tmp_path / "folded.onnx"))
    drop_nan_guards(model.graph)
    return model


def test_minilm_rebuilt_with_fused_operators_computes_the_same_hidden_states(tmp_path: Path) -> None:
    from cascade.models.onnx_fused_bert import fused_bert, hidden_state_difference

    files = _packaged_minilm()
    assert files.num_heads() == 12
    model = _folded(files.model, tmp_path)
    fused = fused_bert(model, num_heads=12)
    assert fused is not None
    ops = [n.op_type for n in fused.graph.node]
    assert ops.count("Attention") == 6 and ops.count("SkipLayerNormalization") == 12
    assert ops.count("EmbedLayerNormalization") == 1 and "Softmax" not in ops and "Transpose" not in ops
    assert hidden_state_difference(tmp_path / "folded.onnx", fused) < 1e-4
    wrong = fused_bert(model, num_heads=6)  # a shape the weights allow, but not the model's heads
    assert wrong is not None and hidden_state_difference(tmp_path / "folded.onnx", wrong) > 1e-2
    assert fused_bert(model, num_heads=7) is None  # 384 is not a multiple of 7


def test_prepared_minilm_is_fused_only_when_the_check_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cascade.models.onnx_encoder import OnnxEncoder

    monkeypatch.setenv("CASCADE_MODELS_DIR", str(tmp_path / "models"))
    files = _packaged_minilm()
    by_heads = {heads: prepared_int8(files.model, num_heads=heads) for heads in (None, 6, 12)}
    ops = {heads: [n.op_type for n in onnx.load(str(path)).graph.node] for heads, path in by_heads.items()}
    assert "QAttention" in ops[12] and "Softmax" not in ops[12]
    assert "QAttention" not in ops[6] and "Softmax" in ops[6]  # the wrong head count failed the check
    assert "QAttention" not in ops[None]
    texts = ["fever in children", "Amyloid plaques and tau tangles in the hippocampus of aged mice."]
    dense = {}
    for heads, path in by_heads.items():
        encoder = OnnxEncoder("minilm-onnx")
        encoder.__dict__["graph"] = path  # the cached property, set: this prepared graph
        dense[heads] = encoder.encode(texts).dense
    assert (dense[12] * dense[None]).sum(axis=1).min() > 0.99  # both int8: close, not equal
