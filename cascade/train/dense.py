"""Fine-tune a bi-encoder for dense retrieval on judged queries with mined hard negatives.

Karpukhin et al., "Dense Passage Retrieval for Open-Domain Question Answering" (EMNLP 2020):
a query's relevant document against its hard negatives and every other document of the batch,
with sentence-transformers' ``MultipleNegativesRankingLoss``; the negatives come from a
Cascade first stage (BM25 by default), spread over its top ranks as in TAS-B's balanced
sampling. With a teacher's margins the loss is MarginMSE (Hofstätter et al. 2020). The result is
a sentence-transformers directory that ``dense(model=DIR)``, ``dense_rerank`` and ``maxsim``
load by path.

>>> result = train_dense(index, split, "dense-model", TrainConfig())            # doctest: +SKIP
>>> cascade.parse("rrf(bm25, dense(model=dense-model))", index=index)           # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cascade.index.index import Index
from cascade.models.resolve import default_device, load_sentence_transformer, resolve_model
from cascade.train.dev import Scorer
from cascade.train.examples import Example, Margins, Split, margin_rows, triplet_rows
from cascade.train.run import Recipe, ReportFn, TrainConfig, TrainResult, fit

KIND = "dense"


def scorer_for(model: Any) -> Scorer:
    """Dev scoring: cosine of the model's sentence embeddings."""
    def score(query: str, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0)
        vectors = model.encode([query, *texts], batch_size=32, show_progress_bar=False, normalize_embeddings=True)
        return np.asarray(vectors[1:] @ vectors[0])

    return score


def build_model(config: TrainConfig, examples: list[Example]) -> Any:
    model = load_sentence_transformer(resolve_model(config.base), default_device())
    model.max_seq_length = config.max_length
    return model


def training_data(model: Any, examples: list[Example], margins: Margins | None) -> tuple[dict[str, list[Any]], Any]:
    from sentence_transformers.sentence_transformer.losses import MarginMSELoss, MultipleNegativesRankingLoss

    if margins is not None:
        return margin_rows(examples, margins), MarginMSELoss(model)
    return triplet_rows(examples), MultipleNegativesRankingLoss(model)


RECIPE = Recipe(KIND, build_model, training_data, scorer_for)


def train_dense(index: Index, split: Split, out: str | Path, config: TrainConfig = TrainConfig(), *,
                teacher: str | None = None, report: ReportFn | None = None) -> TrainResult:
    """Fine-tune ``config.base`` on ``split.train``, check on ``split.dev`` each epoch, publish at ``out``."""
    return fit(RECIPE, index, split, out, config, teacher=teacher, report=report)
