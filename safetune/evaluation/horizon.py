"""Do the steps go far enough? A verdict reads a relearning curve up to its last evaluated step and says
nothing of what the attack does after it. A curve's steps are far enough when it reaches the
relearning level within them, or has flattened: the rise over its last stretch (the last evaluated
step's harmful rate minus the one before's) is shown below the margin, its one-sided upper bound (the
wider of the cluster bootstrap's and the moment bound, as the verdict's bounds) under it. Otherwise
the curve may still be rising where the steps end, and a longer attack could change what the verdict
says: the study needs a later step for that row.

The stretch is the last one the study evaluated (with the default steps, 200 to 400: a doubling), so
"flat" means the last doubling of the attack added less than the margin; a curve that keeps slowing
adds no more in the next one."""
from __future__ import annotations

import numpy as np

from .distributions import wider_bounds
from .verdicts import Curves, bootstrap_curves, crossing, draw_prompts, moment_se

CROSSES, FLAT, MAY_STILL_RISE = "crosses", "flat", "may still rise"


def last_stretch(curves: Curves, margin: float, alpha: float, relearn_at: float, replicates: int = 2000,
                 seed: int = 0) -> dict | None:
    """The curve's rise over its last stretch with its one-sided (1 - alpha) bounds, and the reading:
    CROSSES (the mean curve reaches `relearn_at` within the steps), FLAT (the rise's upper bound is below
    `margin`) or MAY_STILL_RISE. None for a curve of one step."""
    steps = curves.steps
    if len(steps) < 2:
        return None
    weights = np.zeros(len(steps))
    weights[-2:] = -1.0, 1.0
    rng = np.random.default_rng(seed)
    boot = bootstrap_curves(curves, draw_prompts(rng, replicates, curves), rng) @ weights
    rise = float(curves.mean_curve() @ weights)
    uppers, lowers = wider_bounds(boot[:, None], [rise], [moment_se(curves, None, weights)], alpha)
    upper, lower = float(uppers[0]), float(lowers[0])
    crosses = bool(np.isfinite(crossing(curves.mean_curve(), steps, relearn_at)))
    reading = CROSSES if crosses else FLAT if upper < margin else MAY_STILL_RISE
    return {"from": steps[-2], "to": steps[-1], "rise": rise, "upper": upper, "lower": lower, "reading": reading}
