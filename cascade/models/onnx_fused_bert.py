"""A BERT encoder's ONNX graph rebuilt from its weights as ONNX Runtime's fused transformer ops.

PyTorch's exporter writes each attention block as some thirty small operators (reshapes,
transposes, a mask built from ``Range``/``GatherND``/``Where``, two products, a softmax) that
ONNX Runtime's own transformer optimiser no longer recognises in recent exports, so they run one
by one. A BERT layer is always the same computation, so this module reads the weights of a
(constant-folded, float32) export by their Hugging Face names and writes the layer with the
contrib operators ONNX Runtime's BERT optimisation produces (Devlin et al., "BERT", NAACL 2019,
for the layer; the operators are documented in ONNX Runtime's ``ContribOperators.md``):

``EmbedLayerNormalization`` (word + position + token-type embeddings, layer norm, and the
per-text lengths), then per layer ``Attention`` (one product for query, key and value, the
scaled softmax over the unpadded positions, the heads merged), ``MatMul`` +
``SkipLayerNormalization``, ``MatMul`` + ``BiasGelu``, ``MatMul`` + ``SkipLayerNormalization``.

Quantised dynamically (:mod:`cascade.models.onnx_int8`), ``Attention`` becomes ``QAttention``,
whose query/key/value product is integer too. The rebuilt graph assumes right padding (the
lengths are the attention mask's sums), which is how :class:`~cascade.models.onnx_encoder.OnnxEncoder`
pads. :func:`fused_bert` returns None when the graph does not hold a BERT encoder's weights;
the caller checks the rebuilt graph's output against the original before using it.

>>> import onnx                                                           # doctest: +SKIP
>>> fused = fused_bert(onnx.load("folded.onnx"), num_heads=12)           # doctest: +SKIP
>>> [n.op_type for n in fused.graph.node][3:6]                           # doctest: +SKIP
['EmbedLayerNormalization', 'Attention', 'MatMul']
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT = "last_hidden_state"
EMBEDDINGS = ("word_embeddings.weight", "position_embeddings.weight", "token_type_embeddings.weight",
              "LayerNorm.weight", "LayerNorm.bias")
LINEARS = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
           "intermediate.dense", "output.dense")
NORMS = ("attention.output.LayerNorm", "output.LayerNorm")


def _constants(graph: Any) -> dict[str, np.ndarray]:
    """Initializers and Constant nodes' values, by name."""
    from onnx import numpy_helper

    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def linear_weights(graph: Any, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The [in, out] weight of each linear layer, keyed by its bias's name without ``.bias``: the
    stored operand of the ``MatMul`` whose output the bias is added to."""
    producers = {out: node for node in graph.node for out in node.output}
    weights = {}
    for node in graph.node:
        if node.op_type != "Add" or len(node.input) != 2:
            continue
        bias, other = sorted(node.input, key=lambda name: not name.endswith(".bias"))
        product = producers.get(other)
        if bias.endswith(".bias") and product is not None and product.op_type == "MatMul":
            stored = [name for name in product.input if name in values]
            if len(stored) == 1 and values[stored[0]].ndim == 2:
                weights[bias.removesuffix(".bias")] = values[stored[0]]
    return weights


def _epsilon(graph: Any) -> float:
    for node in graph.node:
        if node.op_type == "LayerNormalization":
            for attribute in node.attribute:
                if attribute.name == "epsilon":
                    return float(attribute.f)
    return 1e-12  # BERT's


def fused_bert(model: Any, num_heads: int) -> Any | None:
    """``model`` (an ``onnx.ModelProto`` of a BERT encoder, constants folded) rebuilt with fused
    operators, or None when its weights are not all found under BERT's names."""
    graph = model.graph
    values = _constants(graph)
    found = [name for name in values if name.endswith("embeddings.word_embeddings.weight")]
    if len(found) != 1:
        return None
    prefix = found[0].removesuffix("embeddings.word_embeddings.weight")
    weights = linear_weights(graph, values)
    layers = sorted({int(m.group(1)) for name in weights
                     if (m := re.match(re.escape(prefix) + r"encoder\.layer\.(\d+)\.", name))})
    if not layers or layers != list(range(len(layers))):
        return None
    try:
        tensors = _fused_tensors(prefix, len(layers), values, weights)
    except KeyError:
        return None
    hidden = tensors["emb.LayerNorm.weight"].shape[0]
    if hidden % num_heads:
        return None
    return _model(len(layers), num_heads, hidden, _epsilon(graph), tensors)


def _fused_tensors(prefix: str, n_layers: int, values: dict[str, np.ndarray],
                   weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The rebuilt graph's initializers by name (KeyError when a BERT weight is missing)."""
    tensors = {f"emb.{name}": values[f"{prefix}embeddings.{name}"] for name in EMBEDDINGS}
    for i in range(n_layers):
        layer = f"{prefix}encoder.layer.{i}."
        tensors[f"l{i}.qkv.weight"] = np.concatenate([weights[layer + name] for name in LINEARS[:3]], axis=1)
        tensors[f"l{i}.qkv.bias"] = np.concatenate([values[layer + name + ".bias"] for name in LINEARS[:3]])
        for short, name in zip(("attention_out", "intermediate", "out"), LINEARS[3:]):
            tensors[f"l{i}.{short}.weight"] = weights[layer + name]
            tensors[f"l{i}.{short}.bias"] = values[layer + name + ".bias"]
        for short, name in zip(("norm1", "norm2"), NORMS):
            tensors[f"l{i}.{short}.weight"] = values[layer + name + ".weight"]
            tensors[f"l{i}.{short}.bias"] = values[layer + name + ".bias"]
    return {name: np.ascontiguousarray(t, dtype=np.float32) for name, t in tensors.items()}


def _model(n_layers: int, num_heads: int, hidden: int, epsilon: float, tensors: dict[str, np.ndarray]) -> Any:
    from onnx import TensorProto, helper, numpy_helper

    ms = "com.microsoft"
    nodes = [helper.make_node("Cast", [name], [f"{name}.int32"], to=TensorProto.INT32) for name in INPUTS]
    nodes.append(helper.make_node(
        "EmbedLayerNormalization", ["input_ids.int32", "token_type_ids.int32", *(f"emb.{n}" for n in EMBEDDINGS),
                                    "attention_mask.int32"], ["h0", "lengths"], domain=ms, epsilon=epsilon))
    x = "h0"
    for i in range(n_layers):
        out = OUTPUT if i == n_layers - 1 else f"l{i}.h2"
        nodes += [
            helper.make_node("Attention", [x, f"l{i}.qkv.weight", f"l{i}.qkv.bias", "lengths"], [f"l{i}.attention"],
                             domain=ms, num_heads=num_heads),
            helper.make_node("MatMul", [f"l{i}.attention", f"l{i}.attention_out.weight"], [f"l{i}.a"]),
            helper.make_node("SkipLayerNormalization", [f"l{i}.a", x, f"l{i}.norm1.weight", f"l{i}.norm1.bias",
                                                        f"l{i}.attention_out.bias"], [f"l{i}.h1"],
                             domain=ms, epsilon=epsilon),
            helper.make_node("MatMul", [f"l{i}.h1", f"l{i}.intermediate.weight"], [f"l{i}.i"]),
            helper.make_node("BiasGelu", [f"l{i}.i", f"l{i}.intermediate.bias"], [f"l{i}.gelu"], domain=ms),
            helper.make_node("MatMul", [f"l{i}.gelu", f"l{i}.out.weight"], [f"l{i}.o"]),
            helper.make_node("SkipLayerNormalization", [f"l{i}.o", f"l{i}.h1", f"l{i}.norm2.weight",
                                                        f"l{i}.norm2.bias", f"l{i}.out.bias"], [out],
                             domain=ms, epsilon=epsilon)]
        x = out
    inputs = [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"]) for name in INPUTS]
    output = helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", "sequence", hidden])
    initializers = [numpy_helper.from_array(t, name) for name, t in tensors.items()]
    graph = helper.make_graph(nodes, "fused_bert", inputs, [output], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ms, 1)])


def hidden_state_difference(graph: Path, fused: Any) -> float:
    """Largest |difference| between the last hidden states of ``graph`` and the fused model on two
    right-padded texts of random tokens (the padded positions are not compared)."""
    import onnxruntime as ort

    vocab = int(next(t.dims[0] for t in fused.graph.initializer if t.name == "emb.word_embeddings.weight"))
    lengths = (9, 4)
    ids = np.random.default_rng(0).integers(1000 % vocab, vocab, size=(2, max(lengths)))
    mask = (np.arange(max(lengths))[None, :] < np.array(lengths)[:, None]).astype(np.int64)
    feed = {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    original = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    wanted = {i.name for i in original.get_inputs()}
    before = original.run(None, {k: v for k, v in feed.items() if k in wanted})[0]
    after = ort.InferenceSession(fused.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    return float(np.abs(before - after)[mask.astype(bool)].max())
