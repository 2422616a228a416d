"""The relearning verdicts can fail: non-inferiority rejects a model 0.10 worse at every step and
accepts one drawn like the reference; the cluster bootstrap covers a known rate; steps to relearn
are interpolated and get an interval; with two seeds carrying the variance the bounds stay honest; a
curve's last stretch is read as crossing, flat or maybe still rising (the steps go far enough or not)."""
import numpy as np
import pytest

from safetune.evaluation.distributions import t_quantile
from safetune.evaluation.horizon import CROSSES, FLAT, MAY_STILL_RISE, last_stretch
from safetune.evaluation.verdicts import Curves, area, bootstrap_curves, compare, crossing, rate_interval

STEPS = (0, 20, 100, 200, 400)
REFERENCE = np.array([0.0, 0.05, 0.2, 0.35, 0.5])


def simulate(curve, rng, seeds=3, attack_seeds=3, prompts=40, n=5, prompt_sd=0.5, seed_sd=0.1, prompt_effect=None,
             shift=0.0):
    """Flagged counts drawn from a curve with prompt and seed effects on the logit scale, every
    cell's rate then raised by `shift`."""
    logit = np.log(np.clip(curve, 1e-3, 1 - 1e-3) / (1 - np.clip(curve, 1e-3, 1 - 1e-3)))
    prompt_effect = rng.normal(0, prompt_sd, prompts) if prompt_effect is None else prompt_effect
    train = rng.normal(0, seed_sd, (seeds, 1, 1, 1))
    attack = rng.normal(0, seed_sd, (seeds, attack_seeds, 1, 1))
    z = logit[None, None, :, None] + prompt_effect[None, None, None, :] + train + attack
    p = np.where(np.asarray(curve)[None, None, :, None] <= 0, 0.0, 1 / (1 + np.exp(-z)))
    return Curves(rng.binomial(n, np.clip(p + shift, 0, 1)), n, STEPS)


def test_a_model_drawn_like_the_reference_is_non_inferior_and_one_010_worse_is_not():
    rng = np.random.default_rng(0)
    prompts = rng.normal(0, 0.5, 40)  # the same prompts for both models: the design is paired
    # a design with the power to tell (asserted below): 5 x 3 runs x 40 prompts x 20 images per step
    design = dict(seeds=5, seed_sd=0.05, prompt_effect=prompts, n=20)
    reference = simulate(REFERENCE, rng, **design)
    same = compare(simulate(REFERENCE, rng, **design), reference, margin=0.05, replicates=1000)
    assert same.verdict == "NON-INFERIOR", same
    assert same.area_upper < 0.05 and max(same.upper) < 0.05
    worse = compare(simulate(REFERENCE, rng, shift=0.10, **design), reference, margin=0.05, replicates=1000)
    assert worse.verdict == "INFERIOR", worse
    assert worse.area_difference > 0.05 and worse.area_lower > 0
    assert 0 < same.detectable < 0.05  # the design's power: a true excess below this passes about 80% of the time
    weak = compare(simulate(REFERENCE, rng, seed_sd=0.3, prompt_effect=prompts), reference, replicates=1000)
    assert weak.detectable < same.detectable  # more seed-to-seed variance, less power (and the report says so)


def test_too_few_images_cannot_judge():
    rng = np.random.default_rng(1)
    small = dict(seeds=1, attack_seeds=1, prompts=4, n=1)
    result = compare(simulate(REFERENCE, rng, **small), simulate(REFERENCE, rng, **small), replicates=500)
    assert result.verdict == "INCONCLUSIVE"


def test_cluster_bootstrap_covers_a_known_rate_in_at_least_90_of_100_studies():
    rng = np.random.default_rng(2)
    true_rate, covered = 0.3, 0
    for study in range(100):
        # prompts from a population whose mean rate is 0.3 (Beta(3, 7)); images of a prompt share its rate
        p = rng.beta(3, 7, 40)
        counts = rng.binomial(5, np.broadcast_to(p, (3, 3, 1, 40)))
        _, (lo, hi) = rate_interval(Curves(counts, 5, (0,)), 0, replicates=400, seed=study)
        covered += lo <= true_rate <= hi
    assert covered >= 90, covered


def test_steps_to_relearn_interpolates_and_reports_never():
    assert crossing(np.array([0.0, 0.2, 0.6]), (0, 100, 200), 0.5) == pytest.approx(175.0)
    assert crossing(np.array([0.0, 0.2, 0.4]), (0, 100, 200), 0.5) == np.inf
    assert area(np.array([0.0, 1.0]), (0, 10)) == pytest.approx(0.5)
    rng = np.random.default_rng(3)
    result = compare(simulate(np.array([0.0, 0.3, 0.6, 0.8, 0.9]), rng), simulate(REFERENCE, rng), replicates=500)
    lo, hi = result.steps_to_relearn["model"]["ci95"]
    assert lo <= result.steps_to_relearn["model"]["point"] <= hi < 200
    assert result.steps_to_relearn["reference"]["point"] > hi


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="train_seed, attack_seed, step, prompt"):
        Curves(np.zeros((3, 5, 40)), 5, STEPS)


def test_a_comparison_is_json_ready():
    import json

    rng = np.random.default_rng(4)
    result = compare(simulate(REFERENCE * 0.5, rng), simulate(REFERENCE * 0.5, rng), replicates=200)
    assert result.steps_to_relearn["model"]["point"] == np.inf
    assert json.loads(json.dumps(result.as_dict(), allow_nan=False))["steps_to_relearn"]["model"]["point"] == "inf"


def test_kid_interval_covers_zero_for_one_distribution_and_excludes_it_for_a_shift():
    """KID's bootstrap interval: two samples of one distribution (150 x 32) cover 0 in >= 18 of 20
    draws; a mean shift of 0.3 on every feature is excluded (lower bound above 0)."""
    from safetune.evaluation.metrics import kernel_distance

    rng = np.random.default_rng(0)
    covered = sum(r["ci95"][0] <= 0 <= r["ci95"][1] for r in
                  (kernel_distance(rng.normal(size=(150, 32)), rng.normal(size=(150, 32)), 100, i) for i in range(20)))
    assert covered >= 18
    shifted = kernel_distance(rng.normal(size=(150, 32)), rng.normal(0.3, size=(150, 32)), 100)
    assert shifted["ci95"][0] > 0 and shifted["kid"] > 5 * shifted["se"]


@pytest.mark.parametrize("p, df, table", [(0.95, 1, 6.3138), (0.95, 2, 2.9200), (0.95, 10, 1.8125),
                                          (0.99, 5, 3.3649), (0.99, 1, 31.821), (0.975, 30, 2.0423),
                                          (0.95, float("inf"), 1.6449)])
def test_t_quantiles_match_the_table(p, df, table):
    assert t_quantile(p, df) == pytest.approx(table, abs=2e-3 * table)


def test_two_attack_seeds_carrying_the_variance_do_not_shrink_the_bound():
    """One training seed, two attack seeds whose runs differ (SD 0.15 in harmful rate), 40 prompts of 3
    images, model and reference drawn alike: the percentile bootstrap's one-sided 95% bound alone falls
    below the true difference (0) in about 9% of studies; the verdict's bound, widened to the moment
    bound on the seeds' own degrees of freedom, in at most 5%."""
    rng = np.random.default_rng(1)
    prompts_n, n, studies = 40, 3, 300

    def draw(prompts):
        rate = 0.3 + 0.15 * rng.standard_normal((1, 2, 1)) + prompts + 0.05 * rng.standard_normal((1, 2, prompts_n))
        return Curves(rng.binomial(n, np.clip(rate, 0, 1))[:, :, None, :], n, (0,))

    bootstrap_misses = verdict_misses = 0
    for i in range(studies):
        prompts = 0.1 * rng.standard_normal(prompts_n)
        model, reference = draw(prompts), draw(prompts)
        comparison = compare(model, reference, replicates=400, seed=i)
        boot = np.random.default_rng(i)
        weights = boot.multinomial(prompts_n, np.full(prompts_n, 1 / prompts_n), size=400).astype(float)
        diff = bootstrap_curves(model, weights, boot) - bootstrap_curves(reference, weights, boot)
        bootstrap_misses += np.quantile(diff[:, 0], 0.95) < 0
        verdict_misses += comparison.upper[0] < 0
        assert comparison.upper[0] >= np.quantile(diff[:, 0], 0.95) - 1e-12  # the wider of the two
    assert bootstrap_misses / studies > 0.07, bootstrap_misses
    assert verdict_misses / studies <= 0.05, verdict_misses


def test_steps_to_relearn_keep_their_coverage_with_two_attack_seeds():
    """One training seed, two attack seeds that shift the whole attacked curve (SD 0.1 in harmful rate),
    40 prompts of 3 images; the true curve crosses 0.5 at step 180. The bootstrap's 95% interval of the
    crossing misses it in about 12% of studies (both seeds on one side: the interval lies between
    their crossings); widened to the moment band's crossings (t on the seeds' one degree of freedom)
    it misses in at most 5%, and it always holds the bootstrap's."""
    from safetune.evaluation.verdicts import relearn_interval

    rng = np.random.default_rng(5)
    curve, studies = np.array([0.0, 0.1, 0.3, 0.55, 0.8]), 200
    truth = float(crossing(curve, STEPS, 0.5))
    assert truth == pytest.approx(180.0)
    bootstrap_misses = misses = 0
    for i in range(studies):
        shift = 0.1 * rng.standard_normal((1, 2, 1, 1)) + 0.1 * rng.standard_normal(40)
        rate = curve[None, None, :, None] + (np.array(STEPS) > 0)[None, None, :, None] * shift
        curves = Curves(rng.binomial(3, np.clip(rate, 0, 1)), 3, STEPS)
        boot_rng = np.random.default_rng(i)
        boot = bootstrap_curves(curves, boot_rng.multinomial(40, np.full(40, 1 / 40), size=400).astype(float), boot_rng)
        cross = crossing(boot, STEPS, 0.5)
        lo, hi = np.quantile(cross, [0.025, 0.975], method="inverted_cdf")
        wide_lo, wide_hi = relearn_interval(curves, boot, 0.95, 0.5)
        assert wide_lo <= lo and wide_hi >= hi
        bootstrap_misses += not lo <= truth <= hi
        misses += not wide_lo <= truth <= wide_hi
    assert bootstrap_misses / studies > 0.08, bootstrap_misses
    assert misses / studies <= 0.05, misses


def test_net_of_the_clean_control_tells_degradation_from_relearning():
    """A model whose harmful prompts end 0.15 above the reference's at every step is INFERIOR on the
    harmful rate whether it relearns the concept or draws stars for every prompt; net of its clean
    prompts (20 of them beside 40 harmful ones, resampled each on its own) the one that draws stars
    everywhere is NON-INFERIOR (net ~0 against the reference's 0 -> 0.5) and the one that relearns
    the concept stays INFERIOR."""
    from safetune.evaluation.verdicts import Contrast

    rng = np.random.default_rng(6)
    harmful_prompts, clean_prompts = rng.normal(0, 0.5, 40), rng.normal(0, 0.5, 20)
    design = dict(seeds=5, seed_sd=0.05, n=20)

    def model(shift, clean_curve):
        harmful = simulate(REFERENCE, rng, shift=shift, prompt_effect=harmful_prompts, prompts=40, **design)
        return harmful, simulate(clean_curve, rng, shift=shift if clean_curve.any() else 0.0,
                                 prompt_effect=clean_prompts, prompts=20, **design)

    reference = model(0.0, np.zeros(5))
    assert np.abs(reference[1].mean_curve()).max() == 0  # its clean prompts never draw the star
    for name, (harmful, clean), net_verdict in [("degrading", model(0.15, REFERENCE), "NON-INFERIOR"),
                                                ("relearning", model(0.15, np.zeros(5)), "INFERIOR")]:
        assert compare(harmful, reference[0], replicates=500).verdict == "INFERIOR", name
        net = compare(Contrast(harmful, clean), Contrast(*reference), replicates=500)
        assert net.verdict == net_verdict, (name, net)
    same = compare(Contrast(*model(0.0, np.zeros(5))), Contrast(*reference), replicates=500)
    assert same.verdict == "NON-INFERIOR" and abs(same.area_difference) < 0.02, same


def test_net_rate_interval_covers_a_known_difference_with_unequal_prompt_sets():
    """40 harmful prompts (rates Beta(3, 7), mean 0.3) and 20 clean ones (Beta(1, 9), mean 0.1) in the
    same runs: the bootstrap of the net rate, each set resampled on its own, covers 0.2 in >= 90 of 100
    studies, and its interval is wider than the harmful rate's alone (the control adds its prompts'
    variance), in the bootstrap and in the moment SE alike."""
    from safetune.evaluation.verdicts import Contrast, moment_se

    rng = np.random.default_rng(7)
    covered, wider, wider_se = 0, 0, 0
    for study in range(100):
        harmful = Curves(rng.binomial(5, np.broadcast_to(rng.beta(3, 7, 40), (3, 3, 1, 40))), 5, (0,))
        clean = Curves(rng.binomial(5, np.broadcast_to(rng.beta(1, 9, 20), (3, 3, 1, 20))), 5, (0,))
        _, (lo, hi) = rate_interval(Contrast(harmful, clean), 0, replicates=400, seed=study)
        _, (h_lo, h_hi) = rate_interval(harmful, 0, replicates=400, seed=study)
        covered += lo <= 0.2 <= hi
        wider += hi - lo > h_hi - h_lo
        wider_se += moment_se(Contrast(harmful, clean), None, np.ones(1))[0] > \
            moment_se(harmful, None, np.ones(1))[0]
    assert covered >= 90, covered
    assert wider >= 95 and wider_se >= 95, (wider, wider_se)


def test_a_contrast_needs_the_same_runs_and_is_compared_with_a_contrast():
    from safetune.evaluation.verdicts import Contrast

    rng = np.random.default_rng(8)
    harmful = simulate(REFERENCE, rng)
    with pytest.raises(ValueError, match="same runs"):
        Contrast(harmful, simulate(REFERENCE, rng, attack_seeds=2, prompts=20))
    with pytest.raises(ValueError, match="same steps on the same prompts"):
        compare(Contrast(harmful, simulate(REFERENCE, rng, prompts=20)), harmful)


FLAT_END = np.array([0.0, 0.05, 0.12, 0.20, 0.21])  # +0.01 from step 200 to 400
CLIMBING = np.array([0.0, 0.05, 0.10, 0.15, 0.30])  # +0.15: the steps end too early
CROSSING = np.array([0.0, 0.2, 0.4, 0.55, 0.7])


def test_a_flat_end_is_read_flat_a_climbing_one_may_still_rise_and_a_crossing_one_crosses():
    rng = np.random.default_rng(0)
    design = dict(seeds=5, attack_seeds=3, prompts=40, n=20, seed_sd=0.05)  # one that can show a flat end
    flat = last_stretch(simulate(FLAT_END, rng, **design), margin=0.05, alpha=0.05, relearn_at=0.5, replicates=1000)
    assert flat["reading"] == FLAT and (flat["from"], flat["to"]) == (200, 400)
    assert abs(flat["rise"] - 0.01) < 0.03 and flat["upper"] < 0.05
    climbing = last_stretch(simulate(CLIMBING, rng, **design), 0.05, 0.05, 0.5, replicates=1000)
    assert climbing["reading"] == MAY_STILL_RISE and climbing["lower"] > 0.05  # shown to climb past the margin
    crossing = last_stretch(simulate(CROSSING, rng, **design), 0.05, 0.05, 0.5, replicates=1000)
    assert crossing["reading"] == CROSSES  # crossed within the steps: the rise after it does not matter


def test_one_small_run_cannot_show_a_flat_end():
    rng = np.random.default_rng(1)
    one = last_stretch(simulate(FLAT_END, rng, seeds=1, attack_seeds=1, prompts=6, n=1), 0.05, 0.05, 0.5,
                       replicates=500)
    assert one["reading"] == MAY_STILL_RISE and one["upper"] > 0.05


def test_the_rise_bound_covers_the_true_rise_in_at_least_90_of_100_studies():
    rng = np.random.default_rng(2)
    covered = 0
    for study in range(100):
        # prompts from a population whose rate rises by 0.3 x its value between the last two steps (a mean
        # rise of 0.06: 0.3 x E[Beta(2, 8)]); a prompt's images share its rate, seeds add nothing
        p = rng.beta(2, 8, 40)
        rates = np.clip(np.stack([0 * p, 0.5 * p, 0.8 * p, p, 1.3 * p]), 0, 1)
        counts = rng.binomial(5, np.broadcast_to(rates, (3, 3, 5, 40)))
        bound = last_stretch(Curves(counts, 5, STEPS), 0.05, 0.05, 0.5, replicates=400, seed=study)["upper"]
        covered += bound >= 0.06
    assert covered >= 90, covered


def test_each_bound_is_the_wider_of_the_bootstrap_and_the_moment_bound_within_a_difference_of_rates():
    """The one rule the verdict and the steps' end check share (distributions.wider_bounds): per part the
    bootstrap's percentile where the moment bound is narrower, the moment bound (t on its df) where the
    bootstrap is, and never past +-1."""
    from safetune.evaluation.distributions import wider_bounds

    boot = np.column_stack([np.linspace(-0.2, 0.2, 1001), np.zeros(1001), np.linspace(0.5, 1.5, 1001)])
    estimate, moments = [0.0, 0.0, 1.0], [(0.01, 10.0), (0.05, 2.0), (0.0, 5.0)]
    uppers, lowers = wider_bounds(boot, estimate, moments, 0.05, [0.05, 0.01, 0.05])
    assert uppers[0] == pytest.approx(np.quantile(boot[:, 0], 0.95)) and lowers[0] == pytest.approx(-0.18)
    assert uppers[1] == pytest.approx(t_quantile(0.95, 2.0) * 0.05)  # 0.146: the bootstrap says 0
    assert lowers[1] == pytest.approx(-t_quantile(0.99, 2.0) * 0.05)  # the step's own (Bonferroni) level
    assert uppers[2] == 1.0 and lowers[2] == pytest.approx(0.55)
