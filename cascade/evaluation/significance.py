"""Paired significance tests over per-query scores, and Holm's multiple-comparison correction.

Scores come as two equal-length vectors in the same query order (or as per-query dicts via
:func:`compare`). Both tests are two-sided and test the mean per-query difference.

>>> from cascade.evaluation.significance import compare, holm_bonferroni
>>> base = {"q1": 0.2, "q2": 0.4, "q3": 0.1, "q4": 0.3}
>>> new = {"q4": 0.5, "q3": 0.3, "q2": 0.5, "q1": 0.5}
>>> compare(base, new, test="randomization")  # all 2**4 sign flips enumerated
0.125
>>> holm_bonferroni([0.01, 0.04])
[(0.02, True), (0.04, True)]
"""

from __future__ import annotations

from typing import Literal, Mapping, Sequence

import numpy as np

from cascade.core.errors import CascadeError, MissingDependency

_TIE_TOLERANCE = 1e-12
_CHUNK_ELEMENTS = 1 << 22  # sign-matrix entries held at once (~32 MiB of float64)

Scores = Sequence[float] | np.ndarray


def _differences(a: Scores, b: Scores) -> np.ndarray:
    """a - b as float64, after checking both are 1-D, equally long and hold at least 2 values."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.ndim != 1 or y.ndim != 1:
        raise CascadeError(f"paired scores must be 1-D vectors; got shapes {x.shape} and {y.shape}")
    if x.shape != y.shape:
        raise CascadeError(f"paired scores differ in length: {x.size} vs {y.size} queries")
    if x.size < 2:
        raise CascadeError(f"a paired test needs at least 2 queries; got {x.size}")
    d = x - y
    if not np.all(np.isfinite(d)):
        raise CascadeError("paired scores must be finite numbers (found NaN or infinity)")
    return d


def paired_t_test(a: Scores, b: Scores) -> float:
    """Two-sided p-value of Student's paired t-test (Student 1908) on per-query scores.

    Identical vectors (every difference zero) give 1.0. Matches ``scipy.stats.ttest_rel``.

    >>> round(paired_t_test([0.2, 0.4, 0.1, 0.3], [0.5, 0.5, 0.3, 0.5]), 4)
    0.0163
    """
    d = _differences(a, b)
    sd = float(np.std(d, ddof=1))
    mean = float(np.mean(d))
    if sd == 0.0:
        return 1.0 if mean == 0.0 else 0.0
    try:
        from scipy.stats import t as student_t
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependency("scipy", purpose="the paired t-test") from exc
    statistic = mean / (sd / np.sqrt(d.size))
    return float(min(1.0, 2.0 * student_t.sf(abs(statistic), d.size - 1)))


def paired_randomization_test(
    a: Scores, b: Scores, *, n_permutations: int = 10_000, seed: int = 0
) -> float:
    """Two-sided paired randomisation (sign-flip) test on the mean per-query difference.

    Fisher's randomisation test as recommended for IR by Smucker, Allan & Carterette, "A
    comparison of statistical significance tests for information retrieval evaluation",
    CIKM 2007. With n queries, when ``2**n <= n_permutations`` all sign assignments are
    enumerated and p = #{|mean| >= |observed|} / 2**n (the observed assignment is one of
    them); otherwise ``n_permutations`` random assignments are drawn with
    ``numpy.random.default_rng(seed)`` and p = (#{|mean| >= |observed|} + 1) / (n_permutations + 1).

    >>> paired_randomization_test([0.2, 0.4, 0.1, 0.3], [0.5, 0.5, 0.3, 0.5])
    0.125
    """
    if n_permutations < 1:
        raise CascadeError(f"n_permutations must be at least 1; got {n_permutations}")
    d = _differences(a, b)
    n = d.size
    threshold = abs(float(np.mean(d))) - _TIE_TOLERANCE
    if n < 63 and 2**n <= n_permutations:
        return _exact_count(d, threshold) / 2**n
    count = _monte_carlo_count(d, threshold, n_permutations, seed)
    return (count + 1) / (n_permutations + 1)


def _exact_count(d: np.ndarray, threshold: float) -> int:
    """How many of the 2**n sign assignments give |mean(signs * d)| >= threshold."""
    n = d.size
    total = 1 << n
    chunk = max(1, _CHUNK_ELEMENTS // n)
    bits = np.arange(n, dtype=np.int64)
    count = 0
    for start in range(0, total, chunk):
        codes = np.arange(start, min(start + chunk, total), dtype=np.int64)
        signs = 1.0 - 2.0 * ((codes[:, None] >> bits) & 1)
        count += int(np.count_nonzero(np.abs(signs @ d) / n >= threshold))
    return count


def _monte_carlo_count(d: np.ndarray, threshold: float, n_permutations: int, seed: int) -> int:
    """How many of ``n_permutations`` random sign assignments give |mean| >= threshold."""
    n = d.size
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // n)
    count = 0
    for start in range(0, n_permutations, chunk):
        rows = min(chunk, n_permutations - start)
        signs = 1.0 - 2.0 * rng.integers(0, 2, size=(rows, n))
        count += int(np.count_nonzero(np.abs(signs @ d) / n >= threshold))
    return count


def holm_bonferroni(p_values: Sequence[float], alpha: float = 0.05) -> list[tuple[float, bool]]:
    """Holm's step-down adjusted p-values, in input order, each with reject = adjusted <= alpha.

    Holm, "A simple sequentially rejective multiple test procedure", Scand. J. Statist. 1979:
    the i-th smallest of m p-values becomes max over j <= i of min(1, (m - j + 1) * p_(j)).

    >>> [p for p, _ in holm_bonferroni([0.01, 0.04, 0.03, 0.005])]
    [0.03, 0.06, 0.06, 0.02]
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise CascadeError("p_values must be a flat sequence of numbers")
    if p.size and (not np.all(np.isfinite(p)) or p.min() < 0.0 or p.max() > 1.0):
        raise CascadeError("p-values must lie in [0, 1]")
    if not 0.0 < alpha < 1.0:
        raise CascadeError(f"alpha must lie strictly between 0 and 1; got {alpha}")
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    return [(float(q), bool(q <= alpha)) for q in adjusted]


def compare(
    baseline: Mapping[str, float],
    system: Mapping[str, float],
    *,
    test: Literal["t-test", "randomization"] = "t-test",
    n_permutations: int = 10_000,
    seed: int = 0,
) -> float:
    """p-value of ``test`` on the queries both per-query dicts score, aligned by sorted query id.

    >>> compare({"q1": 0.2, "q2": 0.4, "q3": 0.1}, {"q3": 0.3, "q1": 0.5, "q2": 0.5}) < 0.1
    True
    """
    common = sorted(baseline.keys() & system.keys())
    if not common:
        raise CascadeError("baseline and system share no query ids; nothing to compare")
    a = np.array([baseline[q] for q in common], dtype=np.float64)
    b = np.array([system[q] for q in common], dtype=np.float64)
    if test == "t-test":
        return paired_t_test(a, b)
    if test == "randomization":
        return paired_randomization_test(a, b, n_permutations=n_permutations, seed=seed)
    raise CascadeError(f"unknown test {test!r}; use 't-test' or 'randomization'")
