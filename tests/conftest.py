import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

# Under pytest-xdist the cores are shared out between the workers before torch starts its thread pool:
# two workers of two threads each on two cores fight (an evaluation took 10x as long).
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    _threads = max(1, _cores // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(_threads)


@pytest.fixture(scope="session")
def shipped_pipe():
    from safetune.models.loading import load_pipeline

    return load_pipeline("shapes")


@pytest.fixture(scope="session")
def detector():
    from safetune.evaluation.detectors import load_detector

    return load_detector("shapes")
