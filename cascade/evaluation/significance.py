"""Paired significance tests over per-query scores (scipy), and Holm's multiple-comparison correction.

Scores come as two equal-length vectors in the same query order, or as per-query dicts via
:func:`compare`. Both tests are two-sided and test the mean per-query difference.

**Aligning queries** (one rule for :func:`compare` and for experiments): two systems are
compared on exactly the same query set. Per-query dicts must hold the same query ids; a
mismatch is an error, never silently intersected or filled. Evaluate both runs on the queries
that were searched (``evaluate(run, qrels, queries=...)``: a judged query with no results then
counts 0), as :func:`~cascade.evaluation.experiment.run_experiment` does for every pipeline, so
the vectors align by construction.

>>> from cascade.evaluation.significance import compare, holm_bonferroni
>>> base = {"q1": 0.2, "q2": 0.4, "q3": 0.1, "q4": 0.3}
>>> new = {"q4": 0.5, "q3": 0.3, "q2": 0.5, "q1": 0.5}
>>> compare(base, new, test="randomization")  # all 2**4 sign flips enumerated
0.125
>>> holm_bonferroni([0.01, 0.04])
[(0.02, True), (0.04, True)]
"""

from __future__ import annotations

import warnings
from typing import Literal, Mapping, Sequence

import numpy as np

from cascade.core.errors import CascadeError, MissingDependency

_CHUNK_ELEMENTS = 1 << 22  # sign-matrix entries scipy holds at once (its ``batch``; ~32 MiB of float64)

Scores = Sequence[float] | np.ndarray


def _paired(a: Scores, b: Scores) -> tuple[np.ndarray, np.ndarray]:
    """Both vectors as float64, after checking they are 1-D, equally long, finite and hold at
    least 2 values."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.ndim != 1 or y.ndim != 1:
        raise CascadeError(f"paired scores must be 1-D vectors; got shapes {x.shape} and {y.shape}")
    if x.shape != y.shape:
        raise CascadeError(f"paired scores differ in length: {x.size} vs {y.size} queries")
    if x.size < 2:
        raise CascadeError(f"a paired test needs at least 2 queries; got {x.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise CascadeError("paired scores must be finite numbers (found NaN or infinity)")
    return x, y


def _scipy_stats():  # type: ignore[no-untyped-def]
    try:
        from scipy import stats
    except ImportError as exc:  # pragma: no cover - scipy is a core dependency
        raise MissingDependency("scipy", purpose="significance tests") from exc
    return stats


def paired_t_test(a: Scores, b: Scores) -> float:
    """Two-sided p-value of Student's paired t-test (Student 1908): ``scipy.stats.ttest_rel``.

    Identical vectors (every difference zero, where scipy gives NaN) give 1.0.

    >>> round(paired_t_test([0.2, 0.4, 0.1, 0.3], [0.5, 0.5, 0.3, 0.5]), 4)
    0.0163
    """
    x, y = _paired(a, b)
    if np.array_equal(x, y):
        return 1.0
    with warnings.catch_warnings():  # nearly identical vectors: scipy warns about precision, p is still right
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(_scipy_stats().ttest_rel(x, y).pvalue)


def _mean_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x - y, axis=axis)


def paired_randomization_test(a: Scores, b: Scores, *, n_permutations: int = 10_000, seed: int = 0) -> float:
    """Two-sided paired randomisation (sign-flip) test on the mean per-query difference.

    Fisher's randomisation test as recommended for IR by Smucker, Allan & Carterette, "A
    comparison of statistical significance tests for information retrieval evaluation",
    CIKM 2007, computed by ``scipy.stats.permutation_test(permutation_type="samples")``: with n
    queries it enumerates all 2**n sign assignments when ``2**n <= n_permutations`` (exact p),
    else draws ``n_permutations`` of them with ``numpy.random.default_rng(seed)``, p = (count +
    1) / (n_permutations + 1). Identical vectors give 1.0.

    >>> paired_randomization_test([0.2, 0.4, 0.1, 0.3], [0.5, 0.5, 0.3, 0.5])
    0.125
    """
    if n_permutations < 1:
        raise CascadeError(f"n_permutations must be at least 1; got {n_permutations}")
    x, y = _paired(a, b)
    if np.array_equal(x, y):
        return 1.0
    result = _scipy_stats().permutation_test(
        (x, y), _mean_difference, permutation_type="samples", vectorized=True, n_resamples=n_permutations,
        batch=max(1, _CHUNK_ELEMENTS // x.size), alternative="two-sided", rng=np.random.default_rng(seed))
    return float(result.pvalue)


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


def paired_vectors(baseline: Mapping[str, float], system: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """The two systems' scores in sorted query-id order; CascadeError unless both score exactly
    the same queries (the module's alignment rule)."""
    if baseline.keys() != system.keys():
        only_base = sorted(baseline.keys() - system.keys())
        only_system = sorted(system.keys() - baseline.keys())
        raise CascadeError(
            f"the two systems were scored on different queries ({len(only_base)} only in the baseline, e.g. "
            f"{only_base[:3]}; {len(only_system)} only in the other, e.g. {only_system[:3]}); evaluate both on the "
            "same query ids (evaluate(..., queries=ids) counts a query with no results as 0)")
    ids = sorted(baseline)
    return (np.array([baseline[q] for q in ids], dtype=np.float64),
            np.array([system[q] for q in ids], dtype=np.float64))


def compare(
    baseline: Mapping[str, float],
    system: Mapping[str, float],
    *,
    test: Literal["t-test", "randomization"] = "t-test",
    n_permutations: int = 10_000,
    seed: int = 0,
) -> float:
    """p-value of ``test`` on two per-query dicts over the same query ids, aligned by query id
    (:func:`paired_vectors`: different query sets are an error).

    >>> compare({"q1": 0.2, "q2": 0.4, "q3": 0.1}, {"q3": 0.3, "q1": 0.5, "q2": 0.5}) < 0.1
    True
    """
    if test not in ("t-test", "randomization"):
        raise CascadeError(f"unknown test {test!r}; use 't-test' or 'randomization'")
    a, b = paired_vectors(baseline, system)
    if test == "t-test":
        return paired_t_test(a, b)
    return paired_randomization_test(a, b, n_permutations=n_permutations, seed=seed)
