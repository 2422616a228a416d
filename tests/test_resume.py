"""One resume rule for every study: the same study resumes, other settings are refused with what
differs named (never started over on top of the old results), growable settings extend."""
import json

import pytest

from safetune.errors import SafetuneError
from safetune.studies.resume import resume_or_refuse


def _earlier(tmp_path, config):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"model": "shapes", "config": config, "runs": {"a": 1}}))
    return path


def test_the_same_settings_resume_and_others_are_refused_by_name(tmp_path):
    config = {"steps": [0, 20], "sampling": {"seed": 0, "steps": 20}, "seeds": [0]}
    path = _earlier(tmp_path, config)
    assert resume_or_refuse(path, "backfire", "shapes", config)["runs"] == {"a": 1}
    with pytest.raises(SafetuneError, match=r"sampling.seed \(0 -> 1\)") as error:
        resume_or_refuse(path, "backfire", "shapes", {**config, "sampling": {"seed": 1, "steps": 20}})
    assert str(tmp_path) in str(error.value) and "choose a new --out" in str(error.value)
    with pytest.raises(SafetuneError, match=r"model \(\"shapes\" -> \"other\"\)"):
        resume_or_refuse(path, "backfire", "other", config)
    with pytest.raises(SafetuneError, match=r"new_field \(\"<absent>\" -> 3\)"):  # a setting the old run lacked
        resume_or_refuse(path, "backfire", "shapes", {**config, "new_field": 3})


def test_growable_settings_extend_and_nothing_is_a_fresh_start(tmp_path):
    config = {"steps": [0, 20], "seeds": [0]}
    path = _earlier(tmp_path, config)
    assert resume_or_refuse(path, "relearn", "shapes", {**config, "seeds": [0, 1]}, growable=("seeds",))["runs"]
    assert resume_or_refuse(tmp_path / "none.json", "relearn", "shapes", config) == {}
    path.write_text("{not json")
    with pytest.raises(SafetuneError, match="cannot be read to resume"):
        resume_or_refuse(path, "relearn", "shapes", config)
