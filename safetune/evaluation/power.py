"""What a larger design buys: where a relearning comparison's uncertainty comes from, measured from
the stored runs, and the standard error (and detectable excess, evaluation.verdicts) a design with
more training seeds, attack seeds, prompts or images per prompt would have.

One model's runs give y[t, a, p], a linear part of its per-prompt curve (the area under it, or one
step: weights over the steps), with training seed t, attack seed a (nested in t), prompt p, each cell
the rate of n images. Its mean is modelled as a sum of independent parts,

    y[t, a, p] = mu + seed[t] + run[t, a] + prompt[p] + cell[t, a, p] + image noise (variance image / n),

whose variances are estimated from the runs by the method of moments (the nested two-way analysis of
variance; a negative estimate is set to 0): `image` from the binomial spread of each cell's counts,
`cell` from the run x prompt residual less it, `run` from the spread of runs within a training seed
less what the cells put there, `seed` from the spread of training seeds' means less what runs put
there. The comparison is paired by prompt, so what enters the difference is the spread of the
prompts' effect on the model *minus* their effect on the reference (`prompt_difference`), which a
prompt that is hard for both cancels. The variance of the difference of means under a design is

    seed/T + run/(T A) + (cell + image/n)/(T A P), for the model and for the reference,
    + prompt_difference / P.

The detectable excess takes Student's t on that design's Satterthwaite degrees of freedom as the
verdict's moment bound counts them (Part.df: each model's runs on its training seeds', or its one
training seed's attack seeds', spread): more prompts cannot buy what two attack seeds' one degree of
freedom costs.

A part the design cannot measure (one training seed: `seed`; one attack seed per training seed:
`run`) is 0 here and said so (`unmeasured`): the prediction is then a lower bound.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .distributions import detectable_excess, satterthwaite
from .verdicts import Curves, part_weights, residual_mean_square, seed_spread_df


@dataclass(frozen=True)
class Design:
    """How many of each: training seeds, attack seeds per training seed, prompts, images per prompt (a
    planned design may scale them by any factor: a third attack seed is 1.5 times two)."""
    train_seeds: float
    attack_seeds: float
    prompts: float
    images: float

    @classmethod
    def of(cls, curves: Curves) -> "Design":
        """The design a study's runs of one model had."""
        t, a, _, p = curves.counts.shape
        return cls(t, a, p, curves.n)

    def scaled(self, axis: str, factor: float) -> "Design":
        """This design with one axis (a field name) multiplied by `factor`."""
        return replace(self, **{axis: getattr(self, axis) * factor})


@dataclass(frozen=True)
class Components:
    """One model's variance components of a linear part of its curve (module docstring)."""
    seed: float
    run: float
    cell: float
    image: float  # per image: a cell of n images carries image / n
    unmeasured: tuple[str, ...] = ()

    def variance(self, design: Design) -> float:
        """The variance of the model's mean under `design`, its prompts fixed."""
        t, a, p = design.train_seeds, design.attack_seeds, design.prompts
        return self.seed / t + self.run / (t * a) + (self.cell + self.image / design.images) / (t * a * p)


def _part(curves: Curves, weights: np.ndarray) -> np.ndarray:
    """[t, a, p]: each run's and prompt's weighted sum over the steps."""
    return np.einsum("tasp,s->tap", curves.rates, weights)


def components(curves: Curves, weights: np.ndarray) -> Components:
    """The variance components of `weights` . curve (module docstring) from the runs of `curves`."""
    y = _part(curves, weights)
    t, a, p = y.shape
    n = curves.n
    rates = curves.rates
    # each cell's binomial variance of its mean of n images, unbiased: r (1 - r) n / (n - 1), per image
    # (with one image per cell it cannot be told from the cell's part, which then carries it)
    image = float((np.einsum("tasp,s->tap", rates * (1 - rates), weights ** 2) * n / (n - 1)).mean()) if n > 1 else 0.0
    ms_residual = residual_mean_square(y)
    cell = max(0.0, ms_residual - image / n)
    run_means = y.mean(axis=2)  # [t, a]
    unmeasured = []
    if a > 1:
        within = float(run_means.var(axis=1, ddof=1).mean())
        run = max(0.0, within - ms_residual / p)
    else:
        within, run = 0.0, 0.0
        unmeasured.append("run")
    if t > 1:
        between = float(run_means.mean(axis=1).var(ddof=1))
        seed = max(0.0, between - within / a)
    else:
        seed = 0.0
        unmeasured.append("seed")
    return Components(seed, run, cell, image, tuple(unmeasured))


def prompt_difference(model: Curves, reference: Curves, weights: np.ndarray) -> float:
    """The variance over prompts of the prompts' effect on the model minus their effect on the reference
    (what prompts put into a paired difference), less what the runs' noise puts into the prompt means."""
    ym, yr = _part(model, weights), _part(reference, weights)
    d = ym.mean(axis=(0, 1)) - yr.mean(axis=(0, 1))
    if len(d) < 2:
        return 0.0
    noise = sum(residual_mean_square(y) / (y.shape[0] * y.shape[1]) for y in (ym, yr))
    return max(0.0, float(d.var(ddof=1)) - noise)


@dataclass(frozen=True)
class Part:
    """One linear part of the comparison (the area, or one step) and its measured components."""
    name: str
    model: Components
    reference: Components
    prompts: float

    def se(self, model: Design, reference: Design) -> float:
        """The standard error of model - reference under the two designs (the same prompts)."""
        return float(np.sqrt(self.model.variance(model) + self.reference.variance(reference)
                             + self.prompts / model.prompts))

    def df(self, model: Design, reference: Design) -> float:
        """Satterthwaite's degrees of freedom of that SE as the verdict's moment bound reads it
        (verdicts.moment_se): each model's whole variance on the spread of its training seeds' means
        (T - 1), or with one training seed on that of its attack seeds (A - 1), the prompts' paired part
        on P - 1. Not the finer split a nested analysis could use: the verdict does not use it, so a
        plan on it would promise what the verdict cannot deliver (a reference of one pretraining and
        two attack seeds stands on one degree of freedom, which more prompts do not buy)."""
        terms = [(self.prompts / model.prompts, model.prompts - 1)]
        for c, d in ((self.model, model), (self.reference, reference)):
            terms.append((c.variance(d), seed_spread_df(d.train_seeds, d.attack_seeds)))
        return satterthwaite(terms)[1]

    def shares(self, model: Design, reference: Design) -> dict[str, float]:
        """Each source's share of the difference's variance under the designs."""
        def of(c: Components, d: Design) -> dict[str, float]:
            t, a, p = d.train_seeds, d.attack_seeds, d.prompts
            return {"training seeds": c.seed / t, "attack seeds": c.run / (t * a), "run x prompt": c.cell / (t * a * p),
                    "images": c.image / d.images / (t * a * p)}
        m, r = of(self.model, model), of(self.reference, reference)
        parts = {k: m[k] + r[k] for k in m} | {"prompts": self.prompts / model.prompts}
        total = sum(parts.values())
        return {k: v / total if total else 0.0 for k, v in parts.items()}


def parts(model: Curves, reference: Curves) -> list[Part]:
    """The parts the verdict tests (evaluation.verdicts.compare): the area under the curve, then every step."""
    names = ["area"] + [f"step {s}" for s in model.steps]
    return [Part(name, components(model, w), components(reference, w), prompt_difference(model, reference, w))
            for name, w in zip(names, part_weights(model.steps))]


@dataclass(frozen=True)
class Plan:
    """A comparison's predicted standard error and detectable excess under the design it had and under
    larger ones (each axis of the model's and the reference's design scaled alike; a reference of one
    pretraining keeps it: one pretrained model is one model, while one of several, the study's
    reference_pretrainings, has them scaled too)."""
    margin: float
    alpha: float
    parts: list[Part]
    model: Design
    reference: Design

    def worst(self, factor: float = 1, axes: tuple[str, ...] = (), area_only: bool = False
              ) -> tuple[Part, float, float]:
        """The test's weakest part (the lowest detectable excess), its SE and its detectable excess with
        `axes` scaled by `factor` (none: the design as run); `area_only`: the area's, as a test of the
        area alone would have it."""
        m, r = self.designs(factor, axes)
        scored = [(p, p.se(m, r), detectable_excess(self.margin, self.alpha, p.se(m, r), p.df(m, r)))
                  for p in self.parts[:1 if area_only else None]]
        return min(scored, key=lambda x: x[2])

    def detectable(self, factor: float = 1, axes: tuple[str, ...] = (), area_only: bool = False) -> float:
        """margin - (t_{1-alpha} + z_0.8) x the weakest part's SE, t on its Satterthwaite df
        (evaluation.verdicts)."""
        return self.worst(factor, axes, area_only)[2]

    def as_dict(self) -> dict:
        """What the report shows: the weakest part, its SE and where its variance comes from, and the
        detectable excess as run, with a test of the area alone, with each axis doubled, and the factor
        of the prompts alone (the cheap axis: no new run), and of every axis together, that lets a model
        identical to the reference pass with 80% power (None: not within 64)."""
        part, se, _ = self.worst()
        return {"weakest": part.name, "se": se, "shares": part.shares(self.model, self.reference),
                "unmeasured": sorted(set(part.model.unmeasured) | {f"reference {u}" for u in part.reference.unmeasured
                                                                  if u != "seed"}),
                "detectable": self.detectable(), "area_only": self.detectable(area_only=True),
                "doubled": {axis: self.detectable(2, (axis,)) for axis in AXES},
                "prompts_for_zero": self.needed(("prompts",), 0.0), "all_axes_for_zero": self.needed(AXES, 0.0)}

    def designs(self, factor: float = 1, axes: tuple[str, ...] = ()) -> tuple[Design, Design]:
        """The model's and the reference's designs with `axes` scaled by `factor` (the reference's
        training seeds only where it has several pretrainings: one pretrained model is one model)."""
        m, r = self.model, self.reference
        for axis in axes:
            m = m.scaled(axis, factor)
            r = r if axis == "train_seeds" and r.train_seeds == 1 else r.scaled(axis, factor)
        return m, r

    def needed(self, axes: tuple[str, ...], target: float, limit: int = 64) -> int | None:
        """The smallest factor (up to `limit`) of `axes`, scaled together, at which the detectable excess
        reaches `target`; None when it does not within the limit (the other axes' parts are a floor)."""
        for factor in range(1, limit + 1):
            if self.detectable(factor, axes) >= target:
                return factor
        return None


AXES = ("prompts", "attack_seeds", "train_seeds", "images")


def plan(model: Curves, reference: Curves, margin: float, alpha: float) -> Plan:
    """The plan of one comparison from its stored runs."""
    return Plan(margin, alpha, parts(model, reference), Design.of(model), Design.of(reference))
