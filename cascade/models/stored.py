"""Bi-encoder representations of an index: encode each segment's documents once, store them.

One forward pass per document gives both its dense vector (part ``dense``, float32) and its
contextual token vectors (parts ``tok_offsets`` and ``tok_vectors``, float16: they are the bulk),
stored in the segment under the representation's name (by default the model alias, ``minilm``).
``BUILDER`` is registered for kind ``biencoder`` (entry points ``cascade.representations``), so
documents added later are encoded in their add's commit.

>>> idx = cascade.Index.open("pets.idx")                      # doctest: +SKIP
>>> segments, name = ensure_biencoder(idx, "minilm", tokens=True)   # doctest: +SKIP
>>> dense_vectors(segments[0], name).shape                          # doctest: +SKIP
(2, 384)
"""

from __future__ import annotations

import re
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from cascade.core.progress import Progress
from cascade.index import representations as reps
from cascade.index.builders import BuildContext, RepresentationBuilder
from cascade.index.segment import doc_text

if TYPE_CHECKING:
    from cascade.index.index import Index
    from cascade.index.segment import Segment

ProgressFn = Callable[[int], None]
KIND = "biencoder"
DEFAULT_BATCH_SIZE = 32  # make_encoder's, so the shared encoder serves the default


def representation_name(model: str) -> str:
    """The name a model's representation is stored under: its alias, or its directory's name."""
    base = Path(model).name if ("/" in model or "\\" in model) else model
    name = re.sub(r"[^A-Za-z0-9_]", "_", base).strip("_") or "model"
    return name if name[0].isalpha() else f"m_{name}"


def encode_segment(encoder: Any, seg: "Segment", fields: Sequence[str], tokens: bool,
                   progress: ProgressFn | None = None) -> dict[str, np.ndarray]:
    """The stored parts of one segment: every document's dense vector (and token vectors)."""
    texts = [doc_text(d, fields) for d in seg.docstore.get(list(range(seg.n_docs)))]
    out = encoder.encode(texts, tokens=tokens, progress=progress)
    parts = {"dense": out.dense.astype(np.float32)}
    if tokens:
        parts.update(tok_offsets=out.token_offsets, tok_vectors=out.token_vectors)
    return parts


def encode_biencoder(index: "Index", model: str = "minilm", *, name: str | None = None, tokens: bool = True,
                     batch_size: int = DEFAULT_BATCH_SIZE, progress: ProgressFn | None = None) -> "Index":
    """Store ``model``'s dense (and token) vectors for every document lacking them, one commit
    per segment; returns the latest snapshot (which has them).

    Segments that already carry the representation are skipped, so after a killed encoding
    only the rest is encoded. With the default ``batch_size`` the process's shared encoder does
    the work (:func:`~cascade.models.encoders.shared_encoder`), so the stages that then encode
    queries with the same model do not load it a second time."""
    from cascade.models.encoders import make_encoder, shared_encoder

    if batch_size == DEFAULT_BATCH_SIZE:
        encoder = shared_encoder(model)
    else:
        encoder = make_encoder(model, batch_size=batch_size)
    name = name or representation_name(model)
    done = [0]

    def encode(seg: "Segment") -> dict[str, np.ndarray]:
        base = done[0]
        parts = encode_segment(encoder, seg, index.fields, tokens,
                               None if progress is None else (lambda n: progress(base + n)))
        done[0] += seg.n_docs
        return parts

    spec = {"kind": KIND, "tokens": tokens, "model": model}
    old = index.manifest.representations.get(name)
    upgrade = old is not None and old.get("model") == model and tokens and not old.get("tokens")
    reps.add_representation(index, name, spec, encode, replace=upgrade)
    return index.refresh()


def _build(seg: "Segment", name: str, spec: dict[str, Any], context: BuildContext) -> dict[str, np.ndarray]:
    """The registered builder of kind ``biencoder`` (a new or merged segment's vectors)."""
    from cascade.models.encoders import shared_encoder

    return encode_segment(shared_encoder(str(spec["model"])), seg, context.fields, bool(spec.get("tokens", True)),
                          context.progress)


def _missing(spec: dict[str, Any]) -> str | None:
    from cascade.models.onnx_encoder import is_onnx_model

    model = str(spec.get("model"))
    needs, extra = (("onnxruntime", "tokenizers"), "onnx") if is_onnx_model(model) else \
        (("torch", "sentence_transformers"), "neural")
    lacking = [module for module in needs if find_spec(module) is None]
    if not lacking:
        return None
    return f"{' and '.join(lacking)} {'is' if len(lacking) == 1 else 'are'} not installed " \
           f"(pip install 'cascade-ir[{extra}]')"


BUILDER = RepresentationBuilder(_build, _missing, encodes=True)  # entry point cascade.representations:biencoder


def ensure_biencoder(index: "Index", model: str, *, tokens: bool,
                     progress: ProgressFn | None = None) -> tuple[list["Segment"], str]:
    """``index``'s segments with ``model``'s stored vectors (encoding them now if no commit has
    them; see :func:`cascade.index.representations.ensure`) and the representation's name.

    Token vectors are always stored with a new encoding (they come from the same forward pass),
    so a dense stage and a later MaxSim stage never encode the collection twice."""
    name = representation_name(model)

    def usable(spec: dict[str, Any]) -> bool:
        return spec.get("model") == model and bool(spec.get("tokens") or not tokens)

    def encode(latest: "Index") -> None:
        if progress is not None:
            encode_biencoder(latest, model, name=name, tokens=True, progress=progress)
            return
        todo = sum(seg.n_docs for seg in latest.segments if not reps.has_rep(seg, name))
        with Progress(f"encoding {todo:,} documents with {model}", todo, unit="docs") as bar:
            encode_biencoder(latest, model, name=name, tokens=True, progress=bar.update)

    return reps.ensure(index, name, usable, encode, model_encoding=True)[0], name


def dense_vectors(seg: "Segment", name: str) -> np.ndarray:
    return reps.load(seg, name, "dense")


def token_vectors(seg: "Segment", name: str) -> tuple[np.ndarray, np.ndarray]:
    return reps.load(seg, name, "tok_offsets"), reps.load(seg, name, "tok_vectors")
