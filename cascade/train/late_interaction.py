"""Train a late-interaction (ColBERT-style) head on a bi-encoder's contextual token vectors.

Khattab & Zaharia, "ColBERT: Efficient and Effective Passage Search via Contextualized Late
Interaction over BERT" (SIGIR 2020): a document's score is the sum over query tokens of the
best cosine with any document token (MaxSim). MiniLM's token vectors were never trained for
this; here a linear projection to ``dim`` (128) dimensions goes on top of its transformer, and
both learn with a contrastive loss over MaxSim scores: each query against its relevant
document, its mined hard negatives and every other document of the batch (in-batch negatives),
as PyLate's contrastive loss does; with a teacher's margins, MarginMSE on MaxSim differences.
The projection starts as the token vectors' principal directions (uncentred SVD of a sample),
so before training MaxSim in 128 dimensions already approximates MiniLM's in 384.

The model directory is a sentence-transformers model whose modules are the transformer, the
projection (a ``Dense`` module reading and writing ``token_embeddings``), mean pooling and
normalisation: ``maxsim(model=DIR)`` loads it by path like any bi-encoder and stores 128-d token
vectors (a third of MiniLM's).

>>> result = train_late_interaction(index, split, "li-model", TrainConfig())      # doctest: +SKIP
>>> cascade.parse("bm25 % 100 >> maxsim(model=li-model)", index=index)            # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cascade.core.errors import CascadeError
from cascade.index.index import Index
from cascade.models.resolve import default_device, load_sentence_transformer, resolve_model
from cascade.train.dev import Scorer
from cascade.train.examples import Example, Margins, Split, margin_rows, triplet_rows
from cascade.train.run import Recipe, ReportFn, TrainConfig, TrainResult, fit

KIND = "late-interaction"
DEFAULT_DIM = 128
PCA_SAMPLE_DOCS = 256  # documents whose token vectors give the projection's starting directions


def maxsim_matrix(torch: Any, q: Any, q_mask: Any, d: Any, d_mask: Any) -> Any:
    """[queries, documents] MaxSim of unit token vectors ``q`` [B, Lq, k] and ``d`` [M, Ld, k]."""
    sim = torch.einsum("bik,mjk->bmij", q, d)
    sim = sim.masked_fill(~d_mask[None, :, None, :], -1e4)
    best = sim.amax(dim=3) * q_mask[:, None, :]
    return best.sum(dim=2)


def token_outputs(model: Any, features: dict[str, Any]) -> tuple[Any, Any]:
    """Unit token vectors and their mask (what Cascade's encoder stores) for one batch."""
    import torch

    out = model(features)
    return torch.nn.functional.normalize(out["token_embeddings"], dim=-1), out["attention_mask"].bool()


def maxsim_loss(model: Any) -> Any:
    """The loss module: cross-entropy of each query's MaxSim over its positive, every hard negative
    and every other document of the batch; with labels (teacher margins), MarginMSE on the MaxSim
    difference of positive and negative."""
    import torch

    class MaxSimLoss(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, sentence_features: list[dict[str, Any]], labels: Any = None) -> Any:
            q, q_mask = token_outputs(self.model, sentence_features[0])
            columns = [token_outputs(self.model, f) for f in sentence_features[1:]]
            if labels is not None:
                (p, p_mask), (n, n_mask) = columns[0], columns[1]
                pos = maxsim_matrix(torch, q, q_mask, p, p_mask).diagonal()
                neg = maxsim_matrix(torch, q, q_mask, n, n_mask).diagonal()
                return torch.nn.functional.mse_loss(pos - neg, labels.float())
            scores = torch.cat([maxsim_matrix(torch, q, q_mask, d, m) for d, m in columns], dim=1)
            return torch.nn.functional.cross_entropy(scores, torch.arange(len(q), device=scores.device))

    return MaxSimLoss()


def scorer_for(model: Any) -> Scorer:
    """Dev scoring: MaxSim of the model's unit token vectors (as the ``maxsim`` stage scores)."""
    import torch

    def vectors(texts: Sequence[str]) -> list[Any]:
        out = model.encode(list(texts), output_value="token_embeddings", batch_size=32, show_progress_bar=False,
                           convert_to_numpy=False)
        return [torch.nn.functional.normalize(t.float(), dim=-1) for t in out]

    def score(query: str, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0)
        q = vectors([query])[0]
        with torch.inference_mode():
            return np.array([float((q @ d.T).amax(dim=1).sum()) for d in vectors(texts)])

    return score


def principal_directions(base: Any, texts: Sequence[str], dim: int) -> Any:
    """[dim, width]: the top right-singular vectors of the sample's unit token vectors."""
    import torch

    out = base.encode(list(texts), output_value="token_embeddings", batch_size=32, show_progress_bar=False,
                      convert_to_numpy=False)
    tokens = torch.cat([torch.nn.functional.normalize(t.float(), dim=-1) for t in out])
    _, _, vh = torch.linalg.svd(tokens, full_matrices=False)
    return vh[:dim].contiguous()


def builder(dim: int) -> Any:
    def build_model(config: TrainConfig, examples: list[Example]) -> Any:
        """``config.base``'s transformer + a projection to ``dim`` started at the principal
        directions of its token vectors over the first positives + mean pooling + normalisation."""
        import torch
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling

        base = load_sentence_transformer(resolve_model(config.base), default_device())
        transformer = base[0]
        transformer.max_seq_length = config.max_length
        width = int(base.get_embedding_dimension() if hasattr(base, "get_embedding_dimension")
                    else base.get_sentence_embedding_dimension())
        if not 8 <= dim <= width:
            raise CascadeError(f"dim must be between 8 and the base model's width {width} (got {dim})")
        directions = principal_directions(base, [e.positive for e in examples[:PCA_SAMPLE_DOCS]], dim)
        head = Dense(width, dim, bias=False, activation_function=torch.nn.Identity(), init_weight=directions,
                     module_input_name="token_embeddings", module_output_name="token_embeddings")
        return SentenceTransformer(modules=[transformer, head, Pooling(dim, "mean"), Normalize()],
                                   device=default_device())

    return build_model


def training_data(model: Any, examples: list[Example], margins: Margins | None) -> tuple[dict[str, list[Any]], Any]:
    rows = triplet_rows(examples) if margins is None else margin_rows(examples, margins)
    return rows, maxsim_loss(model)


def train_late_interaction(index: Index, split: Split, out: str | Path, config: TrainConfig = TrainConfig(), *,
                           dim: int = DEFAULT_DIM, teacher: str | None = None,
                           report: ReportFn | None = None) -> TrainResult:
    """Train the head and the transformer under it on ``split.train``, check on ``split.dev`` each
    epoch, publish at ``out``."""
    recipe = Recipe(KIND, builder(dim), training_data, scorer_for, settings={"dim": dim})
    return fit(recipe, index, split, out, config, teacher=teacher, report=report)
