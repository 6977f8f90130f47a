import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow (make test-all)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory):
    """The offline sample photos exported as an image folder (shared by the session)."""
    from mae_backbone.data import export_sample_photos
    out = tmp_path_factory.mktemp("photos")
    export_sample_photos(str(out), names=["astronaut", "chelsea", "coffee", "rocket", "camera", "china"])
    return out


@pytest.fixture
def cpu_bf16(monkeypatch):
    """Simulate a CPU with (``cpu_bf16(True)``) or without (``cpu_bf16(False)``) native bf16, whatever this machine
    has: no test depends on the CPU it runs on. Clears the once-per-process precision warnings."""
    from mae_backbone import precision

    def set_native(native: bool):
        monkeypatch.setattr(precision, "cpu_native_bf16", lambda: native)
        monkeypatch.setattr(precision, "_WARNED", set())
    return set_native
