from safetune.evaluation.detectors import _labelled_set, accuracy


def test_shipped_detector_is_98_percent_accurate_on_held_out_renders(detector):
    # seed 4242 is not the training seed (0) nor its held-out seed (7919): renders never seen
    x, labels = _labelled_set(1400, seed=4242, degrade=False)
    acc = accuracy(detector, x, labels)
    assert min(acc.values()) >= 0.98, acc

def test_detector_features_have_fixed_width(detector):
    from safetune.data.shapesworld import make_dataset, render

    images = [render(e.scene) for e in make_dataset("harmful", 4, seed=1)]
    assert detector.features(images).shape == (4, 256)
    assert (detector.harmful_scores(images) > 0.5).all()


def test_detector_tells_the_related_sparkle_from_the_star():
    """The related benign domain must not read as the harmful concept: >= 98% on unseen renders."""
    import numpy as np

    from safetune.data.shapesworld import make_dataset, render
    from safetune.evaluation.detectors import load_detector

    detector = load_detector("shapes")
    sparkles = [render(e.scene) for e in make_dataset("sparkle", 300, seed=4243)]
    stars = [render(e.scene) for e in make_dataset("harmful", 300, seed=4243)]
    assert np.mean(detector.harmful_scores(sparkles) <= 0.5) >= 0.98
    assert np.mean(detector.harmful_scores(stars) > 0.5) >= 0.98
    shapes = detector.predict(sparkles)["shape"]
    from safetune.data.shapesworld import ATTRIBUTES

    assert np.mean([ATTRIBUTES["shape"][i] == "sparkle" for i in shapes]) >= 0.98
