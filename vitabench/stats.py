"""The statistics of success rates: Wilson intervals, the exact McNemar test and Holm's
adjustment for several tests at once.

Pure Python (``math`` only) so the runner's end-of-run summary can import it cheaply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

Alternative = Literal["two-sided", "less", "greater"]


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence!r}: must lie strictly between 0 and 1")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``successes / n``.

    ``n == 0`` carries no information and gives ``(0.0, 1.0)``, the whole range.
    The bounds are clipped to ``[0, 1]`` (0/n gives lower 0.0, n/n gives upper 1.0 exactly).
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"successes={successes}, n={n}: need 0 <= successes <= n")
    if n == 0:
        return (0.0, 1.0)
    z = _z(confidence)
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


def _binom_cdf(k: int, n: int) -> float:
    """P[X <= k] for X ~ Binomial(n, 1/2), summed exactly with integers."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    total = sum(math.comb(n, i) for i in range(k + 1))
    return total / 2**n


def mcnemar_exact(b: int, c: int, alternative: Alternative = "two-sided") -> float:
    """Exact McNemar p-value from the discordant pair counts.

    ``b``: pairs where the first run succeeded and the second failed; ``c``: the reverse.
    Under the null each discordant pair is a fair coin, so this is a binomial test of
    ``b`` successes in ``b + c`` trials with p = 1/2. ``alternative="greater"`` tests that
    the first run succeeds more often (the second *regressed*), ``"less"`` the reverse;
    ``"two-sided"`` doubles the smaller tail (capped at 1), as ``scipy.stats.binomtest``
    does for p = 1/2. No discordant pairs gives 1.0.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts b={b}, c={c}: must be >= 0")
    n = b + c
    if n == 0:
        return 1.0
    if alternative == "greater":
        return 1.0 - _binom_cdf(b - 1, n)
    if alternative == "less":
        return _binom_cdf(b, n)
    if alternative == "two-sided":
        if b == c:
            return 1.0
        return min(1.0, 2.0 * _binom_cdf(min(b, c), n))
    raise ValueError(f"alternative={alternative!r}; accepted: two-sided, less, greater")


@dataclass(frozen=True)
class PairedCounts:
    """Outcome pairs over episodes two runs share (both ``ok``)."""

    both: int  # success in both
    only_first: int  # b: first succeeded, second failed
    only_second: int  # c: second succeeded, first failed
    neither: int

    @property
    def n(self) -> int:
        return self.both + self.only_first + self.only_second + self.neither

    @property
    def rate_first(self) -> float:
        return (self.both + self.only_first) / self.n if self.n else math.nan

    @property
    def rate_second(self) -> float:
        return (self.both + self.only_second) / self.n if self.n else math.nan


def paired_counts(first: dict[str, bool], second: dict[str, bool]) -> PairedCounts:
    """Count outcome pairs over the episode ids present in both mappings."""
    shared = first.keys() & second.keys()
    both = sum(1 for e in shared if first[e] and second[e])
    only_first = sum(1 for e in shared if first[e] and not second[e])
    only_second = sum(1 for e in shared if second[e] and not first[e])
    return PairedCounts(both, only_first, only_second, len(shared) - both - only_first - only_second)


def holm_adjusted(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of ``p_values`` (one family of tests; NaN entries are not
    tests and stay NaN): rejecting where the adjusted value is below alpha keeps the chance of
    any false rejection in the family at most alpha.

    The i-th smallest of m p-values becomes ``max over j <= i of min(1, (m - j + 1) * p_(j))``.
    """
    tested = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    for p, _ in tested:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p-value {p!r}: must lie in [0, 1]")
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, index) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[index] = running
    return adjusted
