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


def test_a_setting_added_later_at_its_default_keeps_earlier_runs(tmp_path):
    """A study made before a setting existed is the same study as one with that setting at its
    default (the default does what the code did before): it resumes, and its stored runs are found
    under their old identity; the setting at another value is another study, named in the refusal."""
    from safetune.studies.executor import ExecutorConfig, run_specs, spec_key

    defaults = {"steps": [0, 20], "recipe": {"lr": 0.001, "new_field": 0.0}}
    before = {"steps": [0, 20], "recipe": {"lr": 0.001}}  # made before recipe.new_field existed
    path = _earlier(tmp_path, before)
    now = {"steps": [0, 20], "recipe": {"lr": 0.001, "new_field": 0.0}}
    assert resume_or_refuse(path, "relearn", "shapes", now, defaults=defaults)["runs"] == {"a": 1}
    with pytest.raises(SafetuneError, match=r"recipe.new_field \(0.0 -> 0.5\)"):
        resume_or_refuse(path, "relearn", "shapes", {**now, "recipe": {"lr": 0.001, "new_field": 0.5}},
                         defaults=defaults)

    # a stored spec carries the defaults of its day (they lacked the new setting: it was rebuilt once)
    old_spec = {"config": before, "name": "x", "_defaults": {"steps": [0, 20], "recipe": {"lr": 0.001}}}
    new_spec = {"config": now, "name": "x", "_defaults": defaults}
    assert spec_key(old_spec, defaults) == spec_key(new_spec) != spec_key({**new_spec, "config": {
        "steps": [0, 20], "recipe": {"lr": 0.001, "new_field": 0.5}}})
    store = tmp_path / "runs"
    store.mkdir()
    (store / f"{spec_key(old_spec)}.json").write_text(json.dumps({"spec": old_spec, "result": {"kept": 1}}))
    calls = []
    done = run_specs([new_spec], lambda spec: calls.append(spec) or {"kept": 0}, store, ExecutorConfig())
    assert done == {spec_key(new_spec): {"kept": 1}} and calls == []  # found, not run again
