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
