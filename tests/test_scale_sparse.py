"""Learned sparse (SPLADE, a tiny random model) over a sharded index: per-document scores, so
each shard's own top k merged gives one index's ids and scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")

import cascade  # noqa: E402
from cascade.retrieve.learned_sparse import encode_sparse  # noqa: E402
from cascade.scale import ShardedIndex, ShardedStage  # noqa: E402
from tests.test_learned_sparse import DOCS, QUERIES, tiny_model  # noqa: E402,F401  (the fixture)


def test_learned_sparse_over_shards_equals_one_index(tmp_path: Path, tiny_model: str) -> None:  # noqa: F811
    docs = DOCS + [cascade.Doc(f"x{i}", d.text, title=d.title) for i, d in enumerate(DOCS[:10])]  # ties
    one = encode_sparse(cascade.Index.build(docs, tmp_path / "one.idx"), tiny_model)
    sharded = ShardedIndex.build(docs, tmp_path / "s.sidx", shards=3)
    spec = f"sparse(model={tiny_model})"
    ref = cascade.parse(spec, index=one).search(QUERIES, 15)
    got = ShardedStage(sharded, spec, k=15).search_batch(QUERIES)
    assert ref.query_ids == got.query_ids and np.array_equal(ref.offsets, got.offsets)
    assert ref.space.doc_ids(ref.doc) == got.space.doc_ids(got.doc)
    assert np.array_equal(ref.score.view(np.uint32), got.score.view(np.uint32))
