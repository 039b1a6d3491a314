"""MaxSim's kernels: the float16 widening is exact for every float16 value, and exact scores equal a
plain numpy MaxSim whatever the rows' dtype and layout."""

from __future__ import annotations

import numpy as np
import pytest

from cascade.rerank import half
from cascade.rerank.half import half_to_float32
from cascade.rerank.maxsim import exact_scores, maxsim


@pytest.mark.parametrize("kernel", ["hardware", "portable", "chosen"])
def test_half_to_float32_is_exact_for_every_float16(kernel: str) -> None:
    if kernel == "hardware" and not half.HARDWARE_HALF:
        pytest.skip("this CPU has no float16 conversion instruction")
    widen = {"hardware": half.widen_hardware, "portable": half.widen_portable, "chosen": half_to_float32}[kernel]
    bits = np.arange(2**16, dtype=np.uint16)
    got = np.empty(2**16, np.float32)
    widen(bits, got)
    want = bits.view(np.float16).astype(np.float32)
    nan = np.isnan(want)
    assert nan.sum() == 2 * (2**10 - 1)  # the float16 NaNs: all-ones exponent, non-zero mantissa
    assert np.array_equal(got.view(np.uint32)[~nan], want.view(np.uint32)[~nan])  # signed zeros too
    assert np.isnan(got[nan]).all()
    if kernel == "portable":  # numpy keeps signalling NaNs as they are; hardware quiets them
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_the_kernel_choice_follows_the_cpu() -> None:
    assert half.HARDWARE_HALF == half.hardware_half()
    assert half_to_float32 is (half.widen_hardware if half.HARDWARE_HALF else half.widen_portable)


def test_exact_scores_match_plain_numpy_for_any_rows() -> None:
    rng = np.random.default_rng(3)
    q = rng.standard_normal((5, 16)).astype(np.float32)
    docs = [rng.standard_normal((n, 16)).astype(np.float16) for n in (1, 7, 33, 64, 0)]
    plain = [float((q @ d.astype(np.float32).T).max(axis=1).sum()) if len(d) else 0.0 for d in docs]
    np.testing.assert_allclose(exact_scores(q, docs), plain, rtol=1e-5, atol=1e-5)
    strided = [np.asfortranarray(d) for d in docs]  # not C-contiguous: copied, not reinterpreted
    assert np.array_equal(exact_scores(q, strided), exact_scores(q, docs))
    as_float32 = [d.astype(np.float32) for d in docs]
    assert np.array_equal(exact_scores(q, as_float32), exact_scores(q, docs))
    assert maxsim(q, docs[2]) == exact_scores(q, docs)[2]
