"""The distributions the verdicts and the power plans read: normal and Student's t quantiles (no scipy
here), the detectable excess of a one-sided test, Satterthwaite's degrees of freedom, and the one-sided
bounds every verdict reads (the wider of a bootstrap's and a moment bound)."""
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


def wider_bounds(boot: np.ndarray, estimate, moments: list[tuple[float, float]], alpha: float,
                 lower_levels: list[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One-sided bounds of each part of a difference of rates (a column of `boot`, its bootstrap
    replicates; `estimate`, its point; `moments`, its (se, df)): the upper at level `alpha`, the lower at
    its own level (`lower_levels`; `alpha` for each where None), each the wider of the bootstrap's
    percentile and the moment bound (t on its Satterthwaite df), kept within [-1, 1]. Two or three seeds
    make a bootstrap too narrow; the moment bound is what their few degrees of freedom allow."""
    estimate = np.asarray(estimate, dtype=float)
    levels = [alpha] * len(estimate) if lower_levels is None else lower_levels
    se = np.array([s for s, _ in moments])
    uppers = np.minimum(1.0, np.maximum(np.quantile(boot, 1 - alpha, axis=0),
                                        estimate + np.array([t_quantile(1 - alpha, df) for _, df in moments]) * se))
    lowers = np.maximum(-1.0, np.minimum([np.quantile(boot[:, i], q) for i, q in enumerate(levels)],
                                         estimate - np.array([t_quantile(1 - q, df) for q, (_, df) in
                                                              zip(levels, moments)]) * se))
    return uppers, lowers
