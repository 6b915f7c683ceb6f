"""The statistics the benchmarks report, defined once.

**Percentiles** (``percentile``, ``percentiles``): the sample nearest to linear
interpolation's position. The samples are sorted ascending and the p-th percentile
(``0 <= p <= 1``) is the one at 0-based index ``round((n - 1) * p)``, halves rounded up.
This is the definition ``pitctl bench`` uses for its ``p50_us`` ... ``p99_us``
(``src/cli/bench``), so a percentile a script computes and one it reads from ``pitctl
bench`` mean the same thing side by side. It is always one of the samples, never a value
between two that no call took; ``p = 0`` is the minimum and ``p = 1`` the maximum; for an
even count ``p = 0.5`` is the upper of the two middle samples. (It is numpy's
``method="nearest"`` but for ties, which numpy rounds to the even index.)

A latency distribution's middle is its **p50**, ``percentile(xs, 0.5)``. **Medians**
(``median``) are of a few per-run or per-kill figures, where the middle of two runs is the
fair answer: ``statistics.median``, the mean of the two middle values for an even count.
A figure named ``p50`` comes from ``percentile``, one named ``median`` from ``median``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence


def rank(n: int, p: float) -> int:
    """The 0-based index of the p-th percentile among ``n`` sorted samples: ``(n - 1) * p``
    rounded to the nearest integer, halves up (as Rust's ``f64::round`` in ``pitctl bench``;
    Python's ``round`` would take the even one)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"percentile {p} is not in 0..1")
    position = (n - 1) * p
    whole = math.floor(position)
    return whole + 1 if position - whole >= 0.5 else whole


def percentiles(values: Iterable[float], ps: Sequence[float]) -> list[float]:
    """Each percentile of ``ps`` (fractions, ``0.99`` for p99) of ``values``, sorting once;
    NaN for each when there is no value."""
    xs = sorted(values)
    if not xs:
        return [math.nan for _ in ps]
    return [xs[rank(len(xs), p)] for p in ps]


def percentile(values: Iterable[float], p: float) -> float:
    """The ``p``-th percentile (a fraction, ``0.99`` for p99) of ``values``; NaN when empty."""
    return percentiles(values, [p])[0]


def median(values: Iterable[float]) -> float:
    """The median of per-run figures (the mean of the middle two for an even count)."""
    return float(statistics.median(values))


def mean(values: Iterable[float]) -> float:
    """The arithmetic mean; NaN when empty."""
    xs = list(values)
    return statistics.fmean(xs) if xs else math.nan
