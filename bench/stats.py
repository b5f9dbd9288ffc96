"""Small statistics helpers for the benchmark: percentiles, summaries and rates.

Kept free of third-party imports so the unit tests can import them anywhere.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(values: Iterable[float], p: float) -> float | None:
    """The p-th percentile (0..100) by linear interpolation between closest ranks.

    Linear interpolation (numpy's default) rather than nearest-rank so that
    small samples still give a p99 that moves with the tail. None when empty.
    """
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be within 0..100, got {p}")
    ordered = sorted(values)
    if not ordered:
        return None
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    fraction = rank - low
    return float(ordered[low] + (ordered[high] - ordered[low]) * fraction)


def summarize(values: Iterable[float]) -> dict:
    """n, mean, p50, p95, p99 and max of a sample (None fields when empty)."""
    ordered = sorted(values)
    n = len(ordered)
    return {
        "n": n,
        "mean": (sum(ordered) / n) if n else None,
        "p50": percentile(ordered, 50),
        "p95": percentile(ordered, 95),
        "p99": percentile(ordered, 99),
        "max": float(ordered[-1]) if n else None,
    }


def rate(count: int, seconds: float) -> float | None:
    """Operations per second; None when nothing was timed."""
    if seconds <= 0 or count <= 0:
        return None
    return count / seconds


def ratio(ours: float | None, reference: float | None) -> float | None:
    """ours / reference, or None when either is missing or the reference is zero."""
    if ours is None or reference is None or reference == 0:
        return None
    return ours / reference
