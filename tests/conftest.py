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


@pytest.fixture
def run_cli():
    """`safetune ARGS` run in this process, returned as a finished subprocess would be (returncode,
    stdout, stderr). A subprocess pays about 10 s importing torch and diffusers each time (the suite took
    647 s with them, 492 s without); tests/test_cli_errors.py keeps one real `python -m safetune` run."""
    import contextlib
    import io
    import subprocess

    import torch

    from safetune.cli import main

    def run(*args: str) -> subprocess.CompletedProcess:
        threads, out, err = torch.get_num_threads(), io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main([str(a) for a in args])
        finally:
            torch.set_num_threads(threads)  # --threads must not leak into the worker's later tests
        return subprocess.CompletedProcess(["safetune", *args], code, out.getvalue(), err.getvalue())

    return run
