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


@pytest.fixture
def torch_one_thread():
    """One torch thread for the test (detectors on a shared 2-core machine run several times faster so)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def frcnn_file(tmp_path_factory):
    """torchvision's COCO Faster R-CNN (ResNet-50 FPN) with random weights, saved as a plain state dict with
    ``torch.save``: a detector file as users bring one."""
    import torch

    from physadv.core.detection import build_detector

    torch.manual_seed(0)
    det = build_detector("fasterrcnn_resnet50_fpn")
    path = tmp_path_factory.mktemp("weights") / "frcnn_random.pth"
    torch.save(det.model.state_dict(), path)
    return path
