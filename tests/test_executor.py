"""Runs as tasks: a finished run (its file, keyed by its spec's hash) is never rerun, a run that
raises is reported while the others go on, and Ray tasks give the local executor's numbers."""
import json
import logging
from dataclasses import replace

import pytest

from safetune.studies.executor import ExecutorConfig, run_specs, spec_key

CALLS = []


def square(spec):
    CALLS.append(spec["x"])
    if spec["x"] == 3:
        raise RuntimeError("run 3 broke")
    return {"y": spec["x"] ** 2}


def test_local_runs_once_keeps_going_past_a_failure_and_retries_it(tmp_path, caplog):
    specs = [{"x": x, "_where": str(tmp_path)} for x in range(5)]
    CALLS.clear()
    logger = logging.getLogger("safetune")
    logger.addHandler(caplog.handler)  # the CLI's set-up (earlier tests) stops safetune's records at its own handler
    try:
        done = run_specs(specs, square, tmp_path / "runs", ExecutorConfig())
    finally:
        logger.removeHandler(caplog.handler)
    assert sorted(r["y"] for r in done.values()) == [0, 1, 4, 16] and CALLS == [0, 1, 2, 3, 4]
    assert "run 3 broke" in caplog.text and "1 of 5 runs failed" in caplog.text
    stored = json.loads((tmp_path / "runs" / f"{spec_key(specs[4])}.json").read_text())
    assert stored["result"] == {"y": 16} and stored["spec"]["x"] == 4
    CALLS.clear()
    run_specs(specs, square, tmp_path / "runs", ExecutorConfig())
    assert CALLS == [3]  # only the failed run again
    assert spec_key({"x": 1, "_where": "a"}) == spec_key({"x": 1, "_where": "b"}) != spec_key({"x": 2})


def test_collect_runs_nothing_and_names_a_run_that_is_not_stored(tmp_path):
    """Copies grown side by side are joined with --executor collect: stored runs are read, and a
    missing one is refused before any work, by name, instead of starting it here."""
    from safetune.errors import SafetuneError

    specs = [{"x": x, "label": f"square {x}"} for x in (0, 1, 2)]
    run_specs(specs[:2], square, tmp_path / "runs", ExecutorConfig())
    CALLS.clear()
    done = run_specs(specs[:2], square, tmp_path / "runs", ExecutorConfig(executor="collect"))
    assert sorted(r["y"] for r in done.values()) == [0, 1] and CALLS == []
    with pytest.raises(SafetuneError, match=r"1 of the study's runs are not stored in .*runs \(the first: square 2\)"):
        run_specs(specs, square, tmp_path / "runs", ExecutorConfig(executor="collect"))
    assert CALLS == [] and not (tmp_path / "runs" / f"{spec_key(specs[2])}.json").exists()


@pytest.mark.slow
def test_ray_tasks_give_the_local_numbers(tmp_path):
    pytest.importorskip("ray")
    import torch

    from test_relearn_study import tiny

    from safetune.studies.relearn import run_relearn, untimed

    config = replace(tiny(), attacks=["full", "inversion"], train_seeds=[0])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same thread count as a Ray task's: the same float reductions
    try:
        local = run_relearn(tmp_path / "local", config)
    finally:
        torch.set_num_threads(threads)
    remote = run_relearn(tmp_path / "ray", config, executor=ExecutorConfig(executor="ray", cpus=1))
    assert untimed(remote["runs"]) == untimed(local["runs"]) and len(local["runs"]) == 4


@pytest.mark.slow
def test_the_forgetting_study_as_ray_tasks_gives_the_local_numbers(tmp_path):
    pytest.importorskip("ray")
    import torch

    from test_forgetting import tiny_forgetting

    from safetune.studies.forgetting import run_forgetting
    from safetune.studies.relearn import untimed

    config = tiny_forgetting()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = run_forgetting(tmp_path / "local", config)
    finally:
        torch.set_num_threads(threads)
    remote = run_forgetting(tmp_path / "ray", config, executor=ExecutorConfig(executor="ray", cpus=1))
    assert untimed(remote["models"]) == untimed(local["models"]) and len(local["models"]["esd"]["attacks"]) == 1
