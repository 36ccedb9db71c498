"""Wilson intervals and exact McNemar p-values against independently computed values."""

from __future__ import annotations

import math

import pytest

from vitabench.stats import mcnemar_exact, paired_counts, wilson_interval


def wilson_by_hand(k: int, n: int, confidence: float) -> tuple[float, float]:
    """The Wilson score interval written out from its textbook form, z from scipy."""
    from scipy.stats import norm  # imported where used: scipy.stats costs a collecting process most of a second

    z = norm.ppf(1 - (1 - confidence) / 2)
    p = k / n
    denominator = 1 + z**2 / n
    centre = p + z**2 / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return ((centre - spread) / denominator, (centre + spread) / denominator)


@pytest.mark.parametrize("k,n", [(0, 1), (1, 1), (0, 10), (10, 10), (3, 10), (7, 20), (25, 50), (49, 50), (1, 500)])
@pytest.mark.parametrize("confidence", [0.95, 0.9, 0.99])
def test_wilson_matches_closed_form(k: int, n: int, confidence: float) -> None:
    low, high = wilson_interval(k, n, confidence)
    expected_low, expected_high = wilson_by_hand(k, n, confidence)
    assert low == pytest.approx(max(0.0, expected_low), abs=1e-12)
    assert high == pytest.approx(min(1.0, expected_high), abs=1e-12)
    assert low <= k / n <= high


def test_wilson_edges_and_known_values() -> None:
    # 0/n and n/n: the interval touches the boundary exactly and is symmetric between the two.
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 10)[1] == pytest.approx(1 - wilson_interval(10, 10)[0], abs=1e-12)
    # Published value: 0/10 at 95% has upper bound z^2/(n+z^2) = 0.2775.
    assert wilson_interval(0, 10)[1] == pytest.approx(1.959964**2 / (10 + 1.959964**2), abs=1e-6)
    assert wilson_interval(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)
    # No episodes: the whole range.
    assert wilson_interval(0, 0) == (0.0, 1.0)
    # More episodes, narrower interval.
    assert (lambda a, b: a[1] - a[0] > b[1] - b[0])(wilson_interval(5, 10), wilson_interval(50, 100))


@pytest.mark.parametrize("bad", [(-1, 5), (6, 5), (1, -1)])
def test_wilson_rejects_impossible_counts(bad: tuple[int, int]) -> None:
    with pytest.raises(ValueError):
        wilson_interval(*bad)


@pytest.mark.parametrize("b,c", [(0, 1), (1, 0), (0, 5), (5, 0), (3, 7), (7, 3), (10, 2), (4, 4), (12, 30), (0, 40), (40, 0)])
def test_mcnemar_equals_binomial_test_on_discordant_pairs(b: int, c: int) -> None:
    from scipy.stats import binomtest

    n = b + c
    assert mcnemar_exact(b, c) == pytest.approx(binomtest(b, n, 0.5).pvalue, rel=1e-12)
    assert mcnemar_exact(b, c, "greater") == pytest.approx(binomtest(b, n, 0.5, alternative="greater").pvalue, rel=1e-12)
    assert mcnemar_exact(b, c, "less") == pytest.approx(binomtest(b, n, 0.5, alternative="less").pvalue, rel=1e-12)


def test_mcnemar_known_values() -> None:
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 0, "greater") == pytest.approx(1 / 32)  # all five discordant pairs one way
    assert mcnemar_exact(5, 0) == pytest.approx(2 / 32)
    assert mcnemar_exact(0, 5, "greater") == 1.0
    with pytest.raises(ValueError):
        mcnemar_exact(1, 2, "bigger")  # type: ignore[arg-type]


def test_paired_counts_use_shared_episodes_only() -> None:
    first = {"a": True, "b": True, "c": False, "d": False, "only_first": True}
    second = {"a": True, "b": False, "c": True, "d": False, "only_second": False}
    counts = paired_counts(first, second)
    assert (counts.both, counts.only_first, counts.only_second, counts.neither) == (1, 1, 1, 1)
    assert counts.n == 4
    assert counts.rate_first == counts.rate_second == 0.5


def test_holm_adjustment_by_hand_and_against_its_definition() -> None:
    from vitabench.stats import holm_adjusted

    adjusted = holm_adjusted([0.01, 0.04, 0.03, math.nan])
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06]) and math.isnan(adjusted[3])
    assert holm_adjusted([0.5, 0.9]) == [1.0, 1.0]  # capped at 1
    assert holm_adjusted([]) == [] and holm_adjusted([0.02]) == [0.02]
    # The closed-testing definition: a hypothesis is rejected at alpha exactly when Holm's
    # adjusted p is below alpha, i.e. when every ordered prefix clears alpha / (m - rank).
    p_values = [0.001, 0.012, 0.013, 0.04, 0.2]
    for alpha in (0.01, 0.05, 0.1):
        order = sorted(range(len(p_values)), key=p_values.__getitem__)
        rejected: set[int] = set()
        for rank, index in enumerate(order):
            if p_values[index] >= alpha / (len(p_values) - rank):
                break
            rejected.add(index)
        assert {i for i, p in enumerate(holm_adjusted(p_values)) if p < alpha} == rejected
    with pytest.raises(ValueError, match="must lie in"):
        holm_adjusted([0.1, 1.5])
