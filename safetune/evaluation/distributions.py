"""The distributions the verdicts and the power plans read: normal and Student's t quantiles (no scipy
here), the detectable excess of a one-sided test, and Satterthwaite's degrees of freedom."""
from __future__ import annotations

import math

import numpy as np

Z80 = 0.841621


def normal_quantile(p: float) -> float:
    """The standard normal quantile."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)


def t_quantile(p: float, df: float) -> float:
    """Student's t quantile for p in [0.5, 1) and real df (below 1 taken as 1; inf: the normal's). Its
    CDF in theta = atan(x / sqrt(df)) is 1/2 + c * integral_0^theta cos^(df - 1), a smooth integrand,
    integrated by trapezoids and inverted by interpolation (no scipy here)."""
    if math.isinf(df) or df > 1e6:
        return normal_quantile(p)
    df = max(df, 1.0)
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(math.pi)
    theta = np.linspace(0.0, math.pi / 2, 4001)
    density = np.cos(theta) ** (df - 1)
    cdf = 0.5 + c * np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2 * np.diff(theta))])
    return math.sqrt(df) * math.tan(float(np.interp(p, cdf, theta)))


def detectable_excess(margin: float, alpha: float, se: float, df: float = math.inf) -> float:
    """The largest true difference a one-sided test at `alpha` with standard error `se` (on `df`
    degrees of freedom) still declares non-inferior (below `margin`) with 80% probability."""
    return margin - (t_quantile(1 - alpha, df) + Z80) * se


def satterthwaite(terms: list[tuple[float, float]]) -> tuple[float, float]:
    """The sum of independent variance estimates, each (variance, its degrees of freedom), and the sum's
    degrees of freedom by Satterthwaite's formula (inf when no term carries both)."""
    variance = sum(v for v, _ in terms)
    spread = sum(v * v / df for v, df in terms if v > 0 and 0 < df < math.inf)
    return variance, (variance * variance / spread if spread > 0 else math.inf)
