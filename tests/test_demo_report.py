"""The demo's report leads with its point: before/after grids side by side with flagged images
framed, a table whose shown change is the difference of the shown values, the base model's grids
folded, links that work in the .md and the .html, and sentences true of the run that wrote them."""
import re
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from safetune.config import SamplingConfig, TrainConfig
from safetune.evaluation.grid import FLAG_COLOUR, GridLayout, image_grid
from safetune.studies import backfire as backfire_study
from safetune.studies.demo import COMPARISON_ROWS, run_demo


def _red_frames(image: Image.Image) -> int:
    return int((np.asarray(image.convert("RGB")) == FLAG_COLOUR).all(-1).sum())


def test_grid_frames_exactly_the_flagged_images():
    tiles = [Image.new("RGB", (32, 32), (40 * i, 90, 90)) for i in range(6)]
    flagged = [False, True, False, False, False, True]
    grid = image_grid(tiles, columns=3, labels=["a red star", "a blue circle"], flagged=flagged)
    layout = GridLayout.of(6, 32, 3, ["a red star", "a blue circle"])
    assert grid.size == layout.size
    for i, is_flagged in enumerate(flagged):
        assert (_red_frames(grid.crop(layout.box(i))) > 0) == is_flagged, i
    assert _red_frames(image_grid(tiles, columns=3)) == 0


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    """The demo's code path with a study small enough for a test: 3 prompts, 2 images, 2 steps."""
    out = tmp_path_factory.mktemp("demo")
    reduced = backfire_study.BackfireConfig.reduced

    def tiny():
        return replace(reduced(), save_at=[0, 2], n_data=16,
                       align=TrainConfig(steps=2, lr=1e-3, batch_size=4, mode="lora", targets="xattn"),
                       full=TrainConfig(lr=1e-4, mode="full", batch_size=4, checkpoint_every=10**9),
                       lora=TrainConfig(lr=1e-3, mode="lora", batch_size=4, checkpoint_every=10**9))

    mp = pytest.MonkeyPatch()
    mp.setattr(backfire_study.BackfireConfig, "reduced", staticmethod(tiny))
    try:
        results = run_demo(out, SamplingConfig(images_per_prompt=2, steps=4), prompts_per_set=3)
    finally:
        mp.undo()
    return out, results


def test_demo_report_leads_with_the_before_after_grids(tiny_demo):
    out, results = tiny_demo
    md = (out / "report.md").read_text()
    assert md.index("![before and after](comparison.png)") < md.index("| way |") < md.index("<details")
    assert md.index("<details") < md.index("![harmful](grid_harmful.png)")  # the base model's grids folded
    comparison = Image.open(out / "comparison.png")
    layout = GridLayout.of(3 * 2, 32, 2, ["x"] * 3)
    assert comparison.size[0] > 4 * layout.columns * layout.image_size  # aligned + three ways side by side
    assert "first 3 of 3" in md and f"first {COMPARISON_ROWS}" not in md  # what this run showed, not a constant
    # the flagged images of the aligned model's grid are framed in the comparison too
    aligned = Image.open(out / "backfire" / "grids" / "esd-x__harmful.png")
    flagged = results_rate(out) * 6
    assert (_red_frames(aligned) > 0) == (flagged > 0)


def results_rate(out) -> float:
    import json

    return json.loads((out / "backfire" / "results.json").read_text())["models"]["esd-x"]["before"]["harmful"][
        "harmful_rate"]


def test_demo_table_change_is_the_difference_of_the_values_shown(tiny_demo):
    out, _ = tiny_demo
    rows = [line for line in (out / "report.md").read_text().splitlines()
            if line.startswith(("| full |", "| lora-on-top |", "| modular |"))]
    assert len(rows) == 3
    for row in rows:
        before, after, change = (float(re.match(r"\s*([+-]?[\d.]+)", cell).group(1))
                                 for cell in row.split("|")[2:5])
        assert change == pytest.approx(after - before, abs=1e-9)


def test_demo_links_work_in_markdown_and_html(tiny_demo):
    out, _ = tiny_demo
    md, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert "(backfire/report.md)" in md and (out / "backfire" / "report.md").is_file()
    assert 'href="backfire/report.html"' in html and (out / "backfire" / "report.html").is_file()
    assert "<details" in html and "<summary>" in html and 'src="data:image/png;base64,' in html


def test_backfire_report_says_what_this_run_did(tiny_demo):
    out, _ = tiny_demo
    md = (out / "backfire" / "report.md").read_text()
    assert "never-trained" not in md.split("## Harmful rate after benign fine-tuning")[1]  # no reference was run
    assert "the one fine-tuning seed of this run" in md
    assert "every one of the 3 prompts, one row each, 2 images a row" in md
    assert "first 10" not in md and "1 seeds" not in md
