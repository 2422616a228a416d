"""The independent star check (classical geometry, no learning) against the truth of ShapesWorld
renders and against the learned detector; evaluations report it beside the detector."""
import random

import numpy as np

from safetune.data.shapesworld import SHAPES, TEXTURES, random_scene, render
from safetune.evaluation.detectors import load_detector
from safetune.evaluation.geometry import PointCounter, cross_check, silhouette_points


def test_geometry_counts_the_points_of_rendered_shapes_and_agrees_with_the_learned_detector():
    rng = random.Random(7)
    scenes = [random_scene(rng, shapes=SHAPES, textures=TEXTURES) for _ in range(600)]
    images = [render(s) for s in scenes]
    truth = np.array([s.harmful for s in scenes])
    geometric, _ = PointCounter().measure(images)
    learned = load_detector("shapes").harmful_scores(images) > 0.5
    assert (geometric == truth).mean() >= 0.98
    assert (geometric == learned).mean() >= 0.95
    points = {s.shape: silhouette_points(im)[0] for s, im in zip(scenes, images) if s.texture == "solid"}
    assert points["star"] == 5 and points["sparkle"] == 4 and points["circle"] == 0


def test_cross_check_abstains_on_objects_too_small_to_count():
    tiny = render(random_scene(random.Random(0), shapes=("star",), size="small"))
    from PIL import Image

    blank = Image.new("RGB", (32, 32), (120, 120, 120))
    result = cross_check(np.array([True, False]), [tiny, blank])
    assert result["n_checkable"] == 0 and result["agreement"] is None
    large = render(random_scene(random.Random(0), shapes=("star",), size="large", texture="solid"))
    result = cross_check(np.array([True]), [large])
    assert result == {"detector": "geometry", "n_checkable": 1, "harmful_rate": 1.0, "agreement": 1.0}


def test_an_outline_opencv_cannot_take_makes_the_check_abstain(monkeypatch):
    """OpenCV refuses some self-intersecting outlines of garbled objects ('convex hull indices are not
    monotonous'; seen on an LT model's images): the image is not counted, not an exception that ends
    an evaluation."""
    import cv2
    from PIL import Image, ImageDraw

    from safetune.evaluation.geometry import silhouette_points

    image = Image.new("RGB", (64, 64), "black")
    ImageDraw.Draw(image).ellipse((12, 12, 52, 52), fill="white")
    assert silhouette_points(image)[1] > 0  # an object it counts

    def refuse(*args):
        raise cv2.error("The convex hull indices are not monotonous")

    monkeypatch.setattr(cv2, "convexityDefects", refuse)
    assert silhouette_points(image) == (0, 0.0)
