"""Shared fixtures: the read-only datasets and an isolated index cache."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own CASCADE_CACHE_DIR, so nothing touches ~/.cache."""
    cache = tmp_path_factory.mktemp("cascade-cache")
    monkeypatch.setenv("CASCADE_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def cache_dir(_isolated_cache: Path) -> Path:
    """The CASCADE_CACHE_DIR of this test."""
    return _isolated_cache


@pytest.fixture
def datasets_dir() -> Path:
    """The shared datasets directory; skips the test when it is not there."""
    if not DATASETS.is_dir():
        pytest.skip(f"shared datasets not found at {DATASETS}")
    return DATASETS



TINY_WORDS = ("the a cats dogs purr bark at in garden loudly fish swim water birds fly sky sun moon night day "
              "cheese mice eat").split()


def random_docs(n: int, seed: int = 0) -> list:
    """``n`` documents d0.. of 1-12 random TINY_WORDS (seeded)."""
    import cascade

    rng = random.Random(seed)
    return [cascade.Doc(f"d{i}", " ".join(rng.choice(TINY_WORDS) for _ in range(rng.randint(1, 12))))
            for i in range(n)]


def random_queries(n: int, seed: int = 1, min_words: int = 1) -> list:
    """``n`` queries q0.. of ``min_words``-5 random TINY_WORDS (seeded)."""
    import cascade

    rng = random.Random(seed)
    return [cascade.Query(f"q{i}", " ".join(rng.choice(TINY_WORDS) for _ in range(rng.randint(min_words, 5))))
            for i in range(n)]


@pytest.fixture(scope="session")
def tiny_bi_encoder(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A one-layer sentence-transformers BERT with random weights over TINY_WORDS, saved to a
    directory: the loading code a real checkpoint goes through, with no network."""
    pytest.importorskip("sentence_transformers")
    import transformers
    from sentence_transformers import SentenceTransformer, models

    root = tmp_path_factory.mktemp("tiny-st")
    raw = root / "raw"
    raw.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *TINY_WORDS]
    (raw / "vocab.txt").write_text("\n".join(vocab))
    tokenizer = transformers.BertTokenizerFast(str(raw / "vocab.txt"))  # positional: transformers 5 ignores vocab_file=
    transformers.set_seed(0)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=37, max_position_embeddings=64)
    transformers.BertModel(config).save_pretrained(raw)
    tokenizer.save_pretrained(raw)
    model = SentenceTransformer(modules=[models.Transformer(str(raw), max_seq_length=32),
                                         models.Pooling(32, "mean"), models.Normalize()])
    model.save(str(root / "model"))
    return str(root / "model")
