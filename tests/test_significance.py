"""Paired t-test and randomisation test equal scipy's; Holm against hand-worked values; one
rule for aligning queries."""

from __future__ import annotations

import random
import subprocess
import sys

import numpy as np
import pytest

from cascade.core.errors import CascadeError
from cascade.evaluation import significance
from cascade.evaluation.significance import (
    compare,
    holm_bonferroni,
    paired_randomization_test,
    paired_t_test,
)

stats = pytest.importorskip("scipy.stats")


def _pair(n: int, seed: int, shift: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Two correlated per-query score vectors in [0, 1]-ish, b shifted up by ``shift`` on average."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.0, 1.0, n)
    b = a + shift + rng.normal(0.0, 0.2, n)
    return a, b


def _scipy_permutation_p(a: np.ndarray, b: np.ndarray, n_resamples: float, seed: int = 0) -> float:
    """scipy's paired permutation test on the mean difference, drawn as the module draws."""
    result = stats.permutation_test(
        (np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)),
        statistic=lambda x, y, axis=-1: np.mean(x - y, axis=axis),
        permutation_type="samples",
        n_resamples=n_resamples,
        batch=max(1, significance._CHUNK_ELEMENTS // len(a)),
        alternative="two-sided",
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    return float(result.pvalue)


# --- paired t-test ---------------------------------------------------------------------


@pytest.mark.parametrize("n", [5, 30, 300])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_t_test_matches_scipy_ttest_rel(n: int, seed: int) -> None:
    a, b = _pair(n, seed)
    expected = stats.ttest_rel(a, b).pvalue
    assert paired_t_test(a, b) == expected
    assert paired_t_test(list(a), list(b)) == expected


def test_t_test_is_symmetric_in_its_arguments() -> None:
    a, b = _pair(30, 7)
    assert paired_t_test(a, b) == pytest.approx(paired_t_test(b, a), abs=1e-15)


# --- randomisation test: exact enumeration --------------------------------------------


@pytest.mark.parametrize("n", [8, 12])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_randomization_matches_scipy(n: int, seed: int) -> None:
    a, b = _pair(n, seed, shift=0.1)
    assert 2**n <= 10_000  # default n_permutations: exact mode
    expected = _scipy_permutation_p(a, b, n_resamples=np.inf)
    got = paired_randomization_test(a, b)
    assert got == expected
    assert (got * 2**n) == pytest.approx(round(got * 2**n), abs=1e-9)  # a count over 2**n: enumerated


def test_exact_randomization_ignores_seed_and_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _pair(12, 4, shift=0.1)
    reference = paired_randomization_test(a, b, seed=0)
    assert paired_randomization_test(a, b, seed=123) == reference
    monkeypatch.setattr(significance, "_CHUNK_ELEMENTS", 12 * 100)  # scipy in batches of 100 assignments
    assert paired_randomization_test(a, b) == pytest.approx(reference, abs=1e-12)


def test_exact_randomization_hand_worked() -> None:
    # differences -0.3, -0.1, -0.2, -0.2: only "all minus" and "all plus" reach |mean| 0.2
    assert paired_randomization_test([0.2, 0.4, 0.1, 0.3], [0.5, 0.5, 0.3, 0.5]) == 2 / 16
    # differences 1, -1: every one of the 4 assignments ties or beats |mean| = 0
    assert paired_randomization_test([1.0, 0.0], [0.0, 1.0]) == 1.0


# --- randomisation test: Monte Carlo --------------------------------------------------


@pytest.mark.parametrize("seed", [0, 7])
def test_monte_carlo_randomization_equals_scipy(seed: int) -> None:
    a, b = _pair(50, 12, shift=0.03)
    expected = _scipy_permutation_p(a, b, n_resamples=10_000, seed=seed)
    assert 0.01 < expected < 0.5  # a p-value where Monte Carlo error matters
    assert paired_randomization_test(a, b, seed=seed) == expected
    assert paired_randomization_test(a, b, n_permutations=999, seed=seed) == _scipy_permutation_p(a, b, 999, seed)


def test_monte_carlo_close_to_exact_enumeration() -> None:
    a, b = _pair(16, 5, shift=0.05)  # 65,536 assignments
    exact = paired_randomization_test(a, b, n_permutations=2**16)
    assert exact == _scipy_permutation_p(a, b, n_resamples=np.inf)
    assert paired_randomization_test(a, b, n_permutations=20_000, seed=3) == pytest.approx(exact, abs=0.01)


def test_monte_carlo_randomization_is_deterministic_per_seed() -> None:
    a, b = _pair(50, 12, shift=0.03)
    first = paired_randomization_test(a, b, n_permutations=2_000, seed=5)
    assert paired_randomization_test(a, b, n_permutations=2_000, seed=5) == first
    others = {paired_randomization_test(a, b, n_permutations=2_000, seed=s) for s in range(1, 5)}
    assert others != {first}  # the seed really drives the draws
    count = first * 2_001 - 1  # p = (count + 1) / (n_permutations + 1)
    assert count == pytest.approx(round(count), abs=1e-6)


def test_monte_carlo_in_batches_still_equals_scipy(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _pair(50, 3)
    monkeypatch.setattr(significance, "_CHUNK_ELEMENTS", 50 * 7)  # batches of 7 assignments
    got = paired_randomization_test(a, b, n_permutations=3_000, seed=9)
    assert got == _scipy_permutation_p(a, b, n_resamples=3_000, seed=9)
    assert 0.0 < got <= 1.0


def test_monte_carlo_used_when_enumeration_exceeds_budget() -> None:
    a, b = _pair(12, 2, shift=0.1)
    exact = paired_randomization_test(a, b)  # 4096 <= 10_000
    sampled = paired_randomization_test(a, b, n_permutations=4095, seed=1)
    assert sampled != exact
    assert (sampled * 4096 - 1) == pytest.approx(round(sampled * 4096 - 1), abs=1e-6)
    assert sampled == pytest.approx(exact, abs=0.03)


# --- both tests: clear differences, no difference, bad input --------------------------


@pytest.mark.parametrize(
    "test",
    [
        paired_t_test,
        paired_randomization_test,  # n = 40: Monte Carlo
        lambda a, b: paired_randomization_test(a[:12], b[:12]),  # exact
    ],
)
def test_clear_difference_and_identical_vectors(test) -> None:
    a, b = _pair(40, 21, shift=0.3)
    assert test(a, b) < 0.01
    assert test(a, a.copy()) == 1.0


@pytest.mark.parametrize("test", [paired_t_test, paired_randomization_test])
def test_identical_vectors_give_one(test) -> None:
    assert test([0.3, 0.3, 0.5], [0.3, 0.3, 0.5]) == 1.0  # scipy's t-test alone would give NaN
    assert test(np.zeros(40), np.zeros(40)) == 1.0


@pytest.mark.parametrize("test", [paired_t_test, paired_randomization_test])
def test_bad_input_raises_cascade_error(test) -> None:
    with pytest.raises(CascadeError, match="length"):
        test([0.1, 0.2, 0.3], [0.1, 0.2])
    with pytest.raises(CascadeError, match="at least 2"):
        test([0.1], [0.2])
    with pytest.raises(CascadeError, match="at least 2"):
        test([], [])


def test_scipy_is_imported_lazily() -> None:
    code = "import sys, cascade.evaluation.significance; print('scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- Holm-Bonferroni ------------------------------------------------------------------


def _holm_reference(p: list[float], alpha: float) -> list[tuple[float, bool]]:
    """Holm 1979 written out literally: sort, scale by (m - j + 1), running max, cap at 1."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return [(q, q <= alpha) for q in adjusted]


def test_holm_hand_worked_example() -> None:
    result = holm_bonferroni([0.01, 0.04, 0.03, 0.005])
    adjusted = [q for q, _ in result]
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> max(0.06, 0.04)
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-12)
    assert [r for _, r in result] == [True, False, False, True]


def test_holm_caps_at_one_and_uses_alpha() -> None:
    result = holm_bonferroni([0.5, 0.9, 0.02], alpha=0.1)
    assert [q for q, _ in result] == pytest.approx([1.0, 1.0, 0.06], abs=1e-12)
    assert [r for _, r in result] == [False, False, True]
    assert holm_bonferroni([0.02, 0.5, 0.9], alpha=0.05)[0] == (pytest.approx(0.06), False)
    assert holm_bonferroni([]) == []


@pytest.mark.parametrize("seed", range(5))
def test_holm_matches_reference_and_is_monotone(seed: int) -> None:
    rng = random.Random(seed)
    p = [rng.random() ** 3 for _ in range(rng.randint(1, 15))]
    p.append(p[0])  # a tie
    result = holm_bonferroni(p, alpha=0.05)
    expected = _holm_reference(p, 0.05)
    assert [q for q, _ in result] == pytest.approx([q for q, _ in expected], abs=1e-12)
    assert [r for _, r in result] == [r for _, r in expected]
    by_p = sorted(zip(p, (q for q, _ in result)))
    assert all(q1 <= q2 for (_, q1), (_, q2) in zip(by_p, by_p[1:]))  # monotone in p
    assert all(raw <= q <= 1.0 for raw, q in by_p)  # never below the raw p, never above 1


def test_holm_rejects_bad_p_values() -> None:
    with pytest.raises(CascadeError):
        holm_bonferroni([0.1, 1.5])
    with pytest.raises(CascadeError):
        holm_bonferroni([0.1], alpha=0.0)


# --- compare() ------------------------------------------------------------------------


def _dicts(seed: int) -> tuple[dict[str, float], dict[str, float]]:
    a, b = _pair(25, seed, shift=0.08)
    return {f"q{i}": float(x) for i, x in enumerate(a)}, {f"q{i}": float(y) for i, y in enumerate(b)}


def _shuffled(d: dict[str, float], seed: int) -> dict[str, float]:
    items = list(d.items())
    random.Random(seed).shuffle(items)
    return dict(items)


@pytest.mark.parametrize("test", ["t-test", "randomization"])
def test_compare_aligns_by_query_id(test: str) -> None:
    base, system = _dicts(8)
    reference = compare(base, system, test=test)
    assert compare(_shuffled(base, 1), _shuffled(system, 2), test=test) == reference
    ids = sorted(base)
    a = [base[q] for q in ids]
    b = [system[q] for q in ids]
    direct = paired_t_test(a, b) if test == "t-test" else paired_randomization_test(a, b)
    assert reference == direct
    # misaligned vectors would give another answer, so alignment really matters
    misaligned = [system[q] for q in reversed(ids)]
    assert compare(base, system, test="t-test") != paired_t_test(a, misaligned)


def test_compare_refuses_different_query_sets() -> None:
    """The alignment rule: both systems scored on the same queries, never silently intersected."""
    base, system = _dicts(9)
    with pytest.raises(CascadeError, match="different queries") as info:
        compare({**base, "only-in-base": 0.0}, system)
    assert "only-in-base" in str(info.value) and "queries=" in str(info.value)
    with pytest.raises(CascadeError, match="different queries"):
        compare(base, {**system, "only-in-system": 1.0})
    with pytest.raises(CascadeError, match="different queries"):
        compare({"q1": 0.1}, {"q2": 0.2})


def test_paired_vectors_align_by_sorted_query_id() -> None:
    a, b = significance.paired_vectors({"q2": 0.2, "q1": 0.1}, {"q1": 0.5, "q2": 0.7})
    assert a.tolist() == [0.1, 0.2] and b.tolist() == [0.5, 0.7]


def test_compare_errors() -> None:
    with pytest.raises(CascadeError, match="unknown test"):
        compare({"q1": 0.1, "q2": 0.3}, {"q1": 0.2, "q2": 0.5}, test="wilcoxon")  # type: ignore[arg-type]
