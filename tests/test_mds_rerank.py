"""mds_rerank: the classical-MDS kernel (property tests), the local similarity matrix, and the
stage on a tiny random bi-encoder (no network)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cascade.core.errors import CascadeError
from cascade.rerank.mds import classical_mds, distances_to_first, local_similarity, mds_scores, similarity_to_d2


def _sq_dists(x: np.ndarray) -> np.ndarray:
    return ((x[:, :, None, :] - x[:, None, :, :]) ** 2).sum(-1)


@settings(max_examples=60, deadline=None)
@given(queries=st.integers(1, 4), n=st.integers(2, 24), true_dims=st.integers(1, 6), extra=st.integers(0, 3),
       seed=st.integers(0, 2**31 - 1), scale=st.floats(0.01, 100.0))
def test_mds_preserves_distances_of_points_that_embed_exactly(queries: int, n: int, true_dims: int, extra: int,
                                                              seed: int, scale: float) -> None:
    """Points in ``true_dims`` dimensions, embedded in ``true_dims + extra``: every pairwise
    distance comes back (up to float rounding), for every query of the batch."""
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(queries, n, true_dims)) * scale
    d2 = _sq_dists(points)
    coords = classical_mds(d2, dims=true_dims + extra)
    assert coords.shape == (queries, n, true_dims + extra)
    np.testing.assert_allclose(_sq_dists(coords), d2, atol=1e-8 * scale**2 * n, rtol=1e-7)


def test_mds_distances_are_rotation_and_translation_free() -> None:
    rng = np.random.default_rng(3)
    points = rng.normal(size=(1, 9, 3))
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    moved = points @ rotation + 5.0
    a = distances_to_first(classical_mds(_sq_dists(points), 3))
    b = distances_to_first(classical_mds(_sq_dists(moved), 3))
    np.testing.assert_allclose(a, b, atol=1e-9)
    np.testing.assert_allclose(a[0], np.linalg.norm(points[0, 1:] - points[0, :1], axis=1), atol=1e-9)


def test_too_few_dimensions_keep_the_largest_spread() -> None:
    """A line of points with small noise off it: one MDS dimension recovers the order along it."""
    rng = np.random.default_rng(5)
    t = np.sort(rng.uniform(0, 10, size=12))
    points = np.stack([t, rng.normal(scale=0.01, size=12)], axis=1)[None]
    d = distances_to_first(classical_mds(_sq_dists(points), 1))[0]
    assert list(np.argsort(d)) == list(range(11))


def _brute_similarity(sets: list[np.ndarray]) -> np.ndarray:
    n = len(sets)
    m = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            m[i, j] = (sets[i] @ sets[j].T).max(axis=1).mean()
    s = (m + m.T) / 2
    np.fill_diagonal(s, 1.0)
    return s


def test_local_similarity_is_symmetrised_normalised_maxsim() -> None:
    rng = np.random.default_rng(1)
    sets = []
    for size in (3, 7, 1, 12, 5):
        x = rng.normal(size=(size, 16)).astype(np.float32)
        sets.append(x / np.linalg.norm(x, axis=1, keepdims=True))
    got = local_similarity(sets)
    np.testing.assert_allclose(got, _brute_similarity(sets), atol=1e-5)
    assert np.allclose(got, got.T) and np.allclose(np.diag(got), 1.0)
    assert np.all(similarity_to_d2(got[None]) >= 0)


def test_an_empty_token_set_is_dissimilar_to_everything() -> None:
    x = np.eye(4, dtype=np.float32)
    got = local_similarity([x[:2], np.zeros((0, 4), np.float32), x[1:3]])
    assert got[0, 1] == got[1, 0] == got[1, 2] == 0.0 and got[1, 1] == 1.0


def test_alpha_one_keeps_the_incoming_order_and_alpha_zero_follows_the_embedding() -> None:
    rng = np.random.default_rng(2)
    points = rng.normal(size=(2, 8, 3))
    points /= np.linalg.norm(points, axis=2, keepdims=True)
    sim = points @ points.transpose(0, 2, 1)  # unit vectors: 2 - 2 sim are their squared distances
    incoming = np.array([np.arange(7, 0, -1), np.arange(1, 8)], dtype=np.float64)
    kept = mds_scores(sim, incoming, dims=3, alpha=1.0)
    assert [list(np.argsort(-row, kind="stable")) for row in kept] == [list(range(7)), list(range(6, -1, -1))]
    pure = mds_scores(sim, incoming, dims=3, alpha=0.0)
    np.testing.assert_allclose(-pure, np.linalg.norm(points[:, 1:] - points[:, :1], axis=2), atol=1e-7)


# -- the stage --------------------------------------------------------------------------------

WORDS = "cats dogs purr bark garden fish swim water birds fly sky sun moon night day cheese mice eat".split()


@pytest.fixture(scope="module")
def encoded(tiny_bi_encoder: str, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    import cascade
    from cascade.models.stored import encode_biencoder

    rng = random.Random(0)
    docs = [cascade.Doc(f"d{i}", " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 10)))) for i in range(80)]
    idx = cascade.Index.build(docs, tmp_path_factory.mktemp("mds") / "toy.idx")
    return encode_biencoder(idx, tiny_bi_encoder)


QUERIES = ["cats purr", "dogs bark in the garden", "fish swim", "birds fly sky", "mice eat cheese at night"]


def test_stage_reorders_only_the_top_k(encoded, tiny_bi_encoder: str) -> None:  # type: ignore[no-untyped-def]
    import cascade

    model = tiny_bi_encoder
    before = cascade.parse(f"bm25 % 20 >> maxsim(model={model})", index=encoded).search(QUERIES)
    after = cascade.parse(f"bm25 % 20 >> maxsim(model={model}) >> mds_rerank(model={model}, k=6, alpha=0)",
                          index=encoded).search(QUERIES)
    changed = 0
    for (_, a, _), (_, b, scores) in zip(before.per_query(), after.per_query()):
        assert len(a) == len(b)
        assert sorted(a[:6]) == sorted(b[:6]) and list(a[6:]) == list(b[6:])
        assert np.all(np.diff(scores) <= 0)
        changed += list(a[:6]) != list(b[:6])
    assert changed  # pure MDS order differs from MaxSim's somewhere


def test_alpha_one_is_the_incoming_order(encoded, tiny_bi_encoder: str) -> None:  # type: ignore[no-untyped-def]
    import cascade

    model = tiny_bi_encoder
    before = cascade.parse(f"bm25 % 20 >> maxsim(model={model}) % 10", index=encoded).search(QUERIES)
    after = cascade.parse(f"bm25 % 20 >> maxsim(model={model}) >> mds_rerank(model={model}, k=8, alpha=1) % 10",
                          index=encoded).search(QUERIES)
    for (_, a, s), (_, b, _) in zip(before.per_query(), after.per_query()):
        if len(np.unique(s[:8])) == len(s[:8]):  # ties in the incoming scores may resolve either way
            assert list(a) == list(b)


def test_threads_change_no_score(encoded, tiny_bi_encoder: str) -> None:  # type: ignore[no-untyped-def]
    import cascade

    text = f"bm25 % 20 >> maxsim(model={tiny_bi_encoder}) >> mds_rerank(model={tiny_bi_encoder}, k=6, threads={{}})"
    one, three = (cascade.parse(text.format(n), index=encoded) for n in (1, 3))
    a, b = one.search(QUERIES), three.search(QUERIES)
    for (qa, ia, sa), (qb, ib, sb) in zip(a.per_query(), b.per_query()):
        assert qa == qb and list(ia) == list(ib)
        np.testing.assert_array_equal(sa, sb)
    assert "threads=3" in str(three)
    assert one.key() == three.key()  # the stage cache shares their outputs


def test_stage_parameters_and_errors(encoded, tiny_bi_encoder: str) -> None:  # type: ignore[no-untyped-def]
    import cascade

    pipe = cascade.parse(f"bm25 % 20 >> mds_rerank(model={tiny_bi_encoder}, k=5, dims=3)", index=encoded)
    assert "mds_rerank(" in str(pipe) and "dims=3" in str(pipe) and "k=5" in str(pipe)
    assert cascade.parse(str(pipe), index=encoded) == pipe  # printed as it parses
    for bad, message in (("mds_rerank(alpha=2)", "alpha must be at most 1"),
                         ("mds_rerank(dims=0)", "dims must be at least 1"),
                         ("mds_rerank(dim=3)", "did you mean 'dims'")):
        with pytest.raises(CascadeError, match=message):
            cascade.parse(f"bm25 % 20 >> {bad}", index=encoded)
    with pytest.raises(CascadeError, match="put a first stage before it"):
        cascade.parse(f"mds_rerank(model={tiny_bi_encoder})", index=encoded).search("cats")
