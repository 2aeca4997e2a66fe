"""Test-wide settings: a cache inside the repository (fresh on CI), CPU only, quiet progress bars."""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PHYSADV_CACHE", str(ROOT / ".cache" / "tests"))
os.environ.setdefault("PHYSADV_PROGRESS", "0")


@pytest.fixture(scope="session")
def lenet_mnist():
    """LeNet trained by core on MNIST-5k (cached across test runs in .cache/tests)."""
    from physadv.core.train import get_classifier

    return get_classifier("lenet-mnist", progress=False)


@pytest.fixture(scope="session")
def fc_mnist():
    from physadv.core.train import get_classifier

    return get_classifier("fc500-150-10-mnist", progress=False)


@pytest.fixture(scope="session")
def mnist_test():
    from physadv.core.data import load_dataset

    return load_dataset("mnist", "test")
