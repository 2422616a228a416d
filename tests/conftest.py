import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture(scope="session")
def shipped_pipe():
    from safetune.models.loading import load_pipeline

    return load_pipeline("shapes")


@pytest.fixture(scope="session")
def detector():
    from safetune.evaluation.detectors import load_detector

    return load_detector("shapes")
