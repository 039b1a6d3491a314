"""Query encodings prefetched on a background thread: same vectors, encoded once, cost reported once."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from cascade.core.errors import CascadeError
from cascade.models.encoded import Encoded
from cascade.models.encoders import QueryEncodings


class SlowEncoder:
    """Deterministic vectors from the text; each call sleeps (releasing the GIL, as ONNX Runtime does)."""

    dim = 4

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.threads: list[str] = []
        self.fail = fail

    def load(self) -> None:
        pass

    def encode(self, texts, *, tokens: bool = False, progress=None) -> Encoded:  # type: ignore[no-untyped-def]
        self.calls.append(list(texts))
        self.threads.append(threading.current_thread().name)
        time.sleep(0.05)
        if self.fail:
            raise CascadeError("the model is broken")
        dense = np.array([[len(t), i, 1.0, 0.0] for i, t in enumerate(texts)], np.float32)
        tokens_ = np.repeat(dense, 2, axis=0).astype(np.float16)
        return Encoded(dense, np.arange(0, 2 * len(texts) + 1, 2, dtype=np.int64), tokens_)


TEXTS = ["first query", "second", "first query", "third one"]


def test_prefetched_vectors_equal_encoding_in_place_and_are_encoded_once() -> None:
    direct = QueryEncodings(SlowEncoder()).dense(TEXTS)
    encoder = SlowEncoder()
    encodings = QueryEncodings(encoder)
    encodings.prefetch(TEXTS)
    encodings.prefetch(TEXTS)  # already running: no second thread
    np.testing.assert_array_equal(encodings.dense(TEXTS), direct)
    assert [len(t) for t in encodings.tokens(TEXTS)] == [2, 2, 2, 2]
    assert encoder.calls == [["first query", "second", "third one"]]
    assert encoder.threads == ["cascade-query-encoding"]
    encodings.prefetch(TEXTS)  # all encoded: nothing to do
    assert len(encoder.calls) == 1


def test_the_encoding_cost_is_claimed_once_where_it_ran() -> None:
    encoder = SlowEncoder()
    encodings = QueryEncodings(encoder)
    encodings.prefetch(TEXTS)
    encodings.dense(TEXTS)
    assert encoder.threads == ["cascade-query-encoding"]  # the stage's thread encoded nothing itself
    assert encodings.claim_seconds(TEXTS) >= 0.05  # yet the stage reports the encoding's cost
    assert encodings.claim_seconds(TEXTS) == 0.0  # once


def test_a_background_failure_surfaces_where_the_vectors_are_used() -> None:
    encodings = QueryEncodings(SlowEncoder(fail=True))
    encodings.prefetch(TEXTS)
    with pytest.raises(CascadeError, match="broken"):
        encodings.dense(TEXTS)
    with pytest.raises(CascadeError, match="broken"):  # and again, not a stale half-result
        encodings.tokens(TEXTS)


def test_threads_asking_together_encode_each_text_once() -> None:
    encoder = SlowEncoder()
    encodings = QueryEncodings(encoder)
    encodings.prefetch(TEXTS[:2])
    out: list[np.ndarray] = []
    workers = [threading.Thread(target=lambda: out.append(encodings.dense(TEXTS))) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(out) == 4 and all(np.array_equal(o, out[0]) for o in out)
    encoded = [t for call in encoder.calls for t in call]
    assert sorted(encoded) == sorted(set(TEXTS))
