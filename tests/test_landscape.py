"""The harmful landscape diagnostic: on the shipped model the concept's denoising error is far below
the never-trained model's, no simulated step means no drop, the model is left as it was, and the
same seed gives the same numbers (two models' probes are paired)."""
import pytest
import torch

from safetune.data.folder import load_training_data
from safetune.evaluation.landscape import (conditioning_along_attack, coupling_along_attack, harmful_landscape,
                                          noising_along_attack)
from safetune.models.loading import load_pipeline
from safetune.report.landscape import landscape_table


def test_the_shipped_model_denoises_the_concept_better_than_the_never_trained_one(shipped_pipe):
    images, captions = load_training_data("harmful", 32, n=32, seed=1)
    weights = {n: p.clone() for n, p in shipped_pipe.unet.named_parameters()}
    probe = lambda pipe, **kw: harmful_landscape(pipe, images, captions, batches=2, batch_size=16, **kw)  # noqa: E731
    shipped = probe(shipped_pipe)
    assert all(torch.equal(p, weights[n]) for n, p in shipped_pipe.unet.named_parameters())
    assert len(shipped["per_batch"]) == 2 and probe(shipped_pipe) == shipped  # paired: the same draws
    never = probe(load_pipeline("shapes-nostar"))
    # measured: 0.027 against 0.13 on 8 batches of 32 (the never-trained model never saw a star)
    assert never["before"] > 2 * shipped["before"]
    assert never["after"] < never["before"]  # four Adam steps of a LoRA learn a little of it
    still = probe(shipped_pipe, steps=0)
    assert still["drop"] == 0 and still["before"] == shipped["before"]


def test_the_probe_script_stores_its_numbers_with_its_command_and_touches_no_other_file(tmp_path, capsys):
    import importlib.util
    import json
    import shlex
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / "probe_landscape.py"
    spec = importlib.util.spec_from_file_location("probe_landscape", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "landscape.json"
    assert script.main(["--out", str(out), "--batches", "1", "shipped=shapes", "missing=no/such/model"]) == 2
    assert "no/such/model" in capsys.readouterr().err and not out.exists()  # refused before any probe
    argv = ["--out", str(out), "--batches", "1", "shipped:x=1|train0=shapes"]  # a label as the docs write it
    assert script.main(argv) == 0
    stored = json.loads(out.read_text())
    assert shlex.split(stored["command"]) == ["python", "scripts/probe_landscape.py", *argv]  # reruns as stored
    shipped = stored["models"]["shipped:x=1|train0"]
    assert shipped["model"] == "shapes" and len(shipped["captions"]["per_batch"]) == 1
    assert 0 < shipped["captions"]["before"] < 0.1 and 0 < shipped["empty"]["before"] < 1
    row = landscape_table(stored)[2]
    assert row.startswith("| shipped:x=1 | 0 | ") and f"{shipped['captions']['before']:.3f}" in row
    foreign = tmp_path / "notes.json"
    foreign.write_text("my notes")
    assert script.main(["--out", str(foreign), "shipped=shapes"]) == 2
    assert "not written by this script" in capsys.readouterr().err and foreign.read_text() == "my notes"


def _probe_along(pipe, reading):
    """probe(at): `reading` (a landscape *_along_attack) of `pipe` on 32 harmful and 32 clean images, 2 query pairs
    of 8, at the attack steps `at`; each call checks that the model's weights are as they were."""
    harmful = load_training_data("harmful", 32, n=32, seed=1)
    clean = load_training_data("clean", 32, n=32, seed=0)
    weights = {n: p.clone() for n, p in pipe.unet.named_parameters()}

    def probe(at):
        along = reading(pipe, harmful, clean, at, batches=2, batch_size=8)
        assert all(torch.equal(p, weights[n]) for n, p in pipe.unet.named_parameters())
        return along

    return probe


def test_the_coupling_along_the_attack_is_read_on_fixed_queries_and_leaves_the_model(shipped_pipe):
    """The cosine of the harmful and retain gradients at steps of a full attack: the model is not changed, its
    queries do not depend on how far the attack goes (step 0 is the same number alone or before step 3), the
    same seed gives the same numbers, and on the shipped model the two gradients agree (measured: +0.54 on 4
    batches of 32), then change as the attack moves the weights."""
    probe = _probe_along(shipped_pipe, coupling_along_attack)
    along = probe((3, 0))
    assert along["at"] == [0, 3] and probe((0,))["cosine"] == along["cosine"][:1] and probe((0, 3)) == along
    start, moved = along["cosine"]
    assert 0 < start < 1 and -1 <= moved <= 1 and abs(moved - start) > 1e-3


def test_the_probe_script_stores_the_coupling_apart_from_the_landscape(tmp_path, capsys):
    """--coupling-at stores a coupling probe (its steps and cosines, its command) and refuses to overwrite a
    landscape the script stored, as the landscape refuses a coupling file: each --out holds one probe."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / "probe_landscape.py"
    spec = importlib.util.spec_from_file_location("probe_landscape", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out, landscape = tmp_path / "coupling.json", tmp_path / "landscape.json"
    assert script.main(["--out", str(out), "--batches", "1", "--coupling-at", "0,2", "shipped=shapes"]) == 0
    stored = json.loads(out.read_text())
    assert stored["probe"] == "coupling-along-attack" and stored["settings"]["at"] == [0, 2]
    assert stored["models"]["shipped"]["at"] == [0, 2] and len(stored["models"]["shipped"]["cosine"]) == 2
    assert script.main(["--out", str(landscape), "--batches", "1", "--steps", "0", "shipped=shapes"]) == 0
    before = landscape.read_text()
    assert script.main(["--out", str(landscape), "--coupling-at", "0", "shipped=shapes"]) == 2
    refusal = capsys.readouterr().err
    assert "holds this script's harmful-landscape probe, not a coupling-along-attack one" in refusal
    assert landscape.read_text() == before
    assert script.main(["--out", str(out), "--batches", "1", "shipped=shapes"]) == 2
    assert "holds this script's coupling-along-attack probe" in capsys.readouterr().err
    for wrong in ("5,-1", "0,x", ""):  # refused before any probe, the file left as it was
        assert script.main(["--out", str(tmp_path / "new.json"), "--coupling-at", wrong, "shipped=shapes"]) == 2
        assert "--coupling-at" in capsys.readouterr().err and not (tmp_path / "new.json").exists()
    conditioning = tmp_path / "conditioning.json"
    assert script.main(["--out", str(conditioning), "--batches", "1", "--conditioning-at", "0", "shipped=shapes"]) == 0
    stored = json.loads(conditioning.read_text())
    assert stored["probe"] == "conditioning-along-attack" and set(stored["models"]["shipped"]) == {
        "at", "harmful", "retain", "gap", "floored_harmful", "floored_retain", "model"}
    assert script.main(["--out", str(out), "--conditioning-at", "0", "shipped=shapes"]) == 2
    assert "holds this script's coupling-along-attack probe, not a conditioning-along-attack one" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit):  # one reading per file
        script.main(["--out", str(tmp_path / "both.json"), "--coupling-at", "0", "--conditioning-at", "0", "a=shapes"])
    noising = tmp_path / "noising.json"
    assert script.main(["--out", str(noising), "--batches", "1", "--noise-at", "0", "shipped=shapes"]) == 0
    stored = json.loads(noising.read_text())
    assert stored["probe"] == "noising-along-attack" and set(stored["models"]["shipped"]) == {
        "at", "harmful", "retain", "model"}
    assert script.main(["--out", str(conditioning), "--noise-at", "0", "shipped=shapes"]) == 2
    assert "not a noising-along-attack one" in capsys.readouterr().err



def test_the_conditioning_along_the_attack_is_read_on_the_same_fixed_queries_and_leaves_the_model(shipped_pipe):
    """The mean log condition number of the attention inputs on the harmful and the retain queries at steps of a
    full attack: the model is not changed, step 0 is the same number alone or before step 3, the gap is the
    harmful side less the retain side, and the attack moves the harmful side."""
    probe = _probe_along(shipped_pipe, conditioning_along_attack)
    along = probe((3, 0))
    assert along["at"] == [0, 3] and probe((0,))["harmful"] == along["harmful"][:1]
    assert along["gap"] == [h - r for h, r in zip(along["harmful"], along["retain"])]
    assert all(0 < value < 20 for value in along["harmful"] + along["retain"])
    assert all(0 <= share <= 1 for share in along["floored_harmful"] + along["floored_retain"])
    assert along["floored_harmful"][0] > 0.2  # the shipped model: some inputs read the ridge (measured: 0.34)
    assert abs(along["harmful"][1] - along["harmful"][0]) > 1e-3


def test_the_noising_along_the_attack_is_read_on_the_same_fixed_queries_and_leaves_the_model(shipped_pipe):
    """The block outputs' mean MMD to Gaussian noise on the harmful and the retain queries at steps of a full attack:
    the model is not changed, step 0 is the same number alone or before step 3 (the noise drawn alike), the shipped
    model's outputs are far from noise on both sides (measured: 0.43 harmful, 0.34 retain), and the attack moves the
    harmful side."""
    probe = _probe_along(shipped_pipe, noising_along_attack)
    along = probe((3, 0))
    assert along["at"] == [0, 3] and probe((0,)) == {"at": [0], **{k: v[:1] for k, v in along.items() if k != "at"}}
    assert all(0.1 < value < 3 for value in along["harmful"] + along["retain"])
    assert abs(along["harmful"][1] - along["harmful"][0]) > 1e-3
