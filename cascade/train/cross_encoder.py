"""Train a cross-encoder reranker from judged queries and mined hard negatives.

Nogueira & Cho, "Passage Re-ranking with BERT" (2019): a transformer reads query and document
together and a one-logit head scores the pair. Here the head starts untrained on a bi-encoder's
transformer (MiniLM by default: no cross-encoder checkpoint installs without the model hub) and
learns from each (query, relevant document) pair against ``negatives`` hard negatives that a
Cascade first stage ranked high, with sentence-transformers' ``CrossEncoderTrainer`` and binary
cross-entropy (positives weighted by ``negatives`` so both classes count alike). With a teacher's
margins (:mod:`cascade.train.teacher`) the loss is MarginMSE instead (Hofstätter et al.,
"Improving Efficient Neural Ranking Models with Cross-Architecture Knowledge Distillation",
2020). The result is a directory the ``cross_encoder`` stage loads by path; its tokenizer keeps
the training length, which the stage then reads pairs at.

>>> result = train_cross_encoder(index, split, "ce-model", TrainConfig(epochs=1))   # doctest: +SKIP
>>> cascade.parse("bm25 % 100 >> cross_encoder(model=ce-model)", index=index)        # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cascade.index.index import Index
from cascade.models.resolve import default_device, require, resolve_model
from cascade.train.dev import Scorer
from cascade.train.examples import Example, Margins, Split, margin_rows, pair_rows
from cascade.train.run import Recipe, ReportFn, TrainConfig, TrainResult, fit

KIND = "cross-encoder"


def scorer_for(model: Any) -> Scorer:
    """Dev scoring with a sentence-transformers CrossEncoder."""
    def score(query: str, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0)
        return np.asarray(model.predict([(query, t) for t in texts], batch_size=32, show_progress_bar=False))

    return score


def build_model(config: TrainConfig, examples: list[Example]) -> Any:
    """A one-logit CrossEncoder on ``config.base``'s transformer (a new head when it has none)."""
    st = require("sentence_transformers", "cascade train", package="sentence-transformers", extra="train")
    model = st.CrossEncoder(resolve_model(config.base), num_labels=1, max_length=config.max_length,
                            device=default_device())
    model.tokenizer.model_max_length = config.max_length
    return model


def training_data(model: Any, examples: list[Example], margins: Margins | None) -> tuple[dict[str, list[Any]], Any]:
    import torch
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss, MarginMSELoss

    if margins is not None:
        return margin_rows(examples, margins), MarginMSELoss(model)
    negatives = sum(len(e.negatives) for e in examples) / max(1, len(examples))
    return pair_rows(examples), BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(negatives))


RECIPE = Recipe(KIND, build_model, training_data, scorer_for, cross_encoder=True)


def train_cross_encoder(index: Index, split: Split, out: str | Path, config: TrainConfig = TrainConfig(), *,
                        teacher: str | None = None, report: ReportFn | None = None) -> TrainResult:
    """Train on ``split.train`` (negatives mined from ``index``), check on ``split.dev`` each epoch,
    publish the model at ``out``; a ``teacher`` pipeline's margins switch the loss to MarginMSE."""
    return fit(RECIPE, index, split, out, config, teacher=teacher, report=report)
