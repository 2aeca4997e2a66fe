"""core.data and core.models: the built-in splits, file formats, architectures and the training cache."""
import csv
import gzip
import struct
import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from physadv.core.config import from_dict, to_dict
from physadv.core.data import load_dataset
from physadv.core.errors import PhysadvError
from physadv.core.io import write_image
from physadv.core.models import architecture_names, build_classifier, load_pretrained
from physadv.core.train import (TrainConfig, cached_metrics, default_train_config, get_classifier, load_classifier,
                                save_classifier, train_classifier)


def test_mnist5k_split_is_fixed_stratified_and_disjoint():
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    assert train.images.shape == (4000, 1, 28, 28) and test.images.shape == (1000, 1, 28, 28)
    assert train.labels.bincount().tolist() == [400] * 10 and test.labels.bincount().tolist() == [100] * 10
    assert 0.0 <= float(train.images.min()) and float(train.images.max()) <= 1.0
    # no test image also appears in train
    tr = {bytes((x * 255).round().to(torch.uint8).numpy()) for x in train.images}
    assert not any(bytes((x * 255).round().to(torch.uint8).numpy()) in tr for x in test.images)
    assert torch.equal(load_dataset("mnist", "test").images, test.images)  # fixed


def _write_idx(path, arr):
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.astype(np.uint8).tobytes())


def test_mnist_idx_files_from_a_path(tmp_path):
    ref = load_dataset("mnist", "test").subset(50)
    imgs = (ref.images[:, 0] * 255).round().numpy().astype(np.uint8)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", imgs)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", ref.labels.numpy())
    got = load_dataset("mnist", "test", root=tmp_path)
    assert torch.equal(got.labels, ref.labels)
    assert (got.images - ref.images).abs().max() < 1e-6
    with pytest.raises(PhysadvError, match="MNIST folder not found"):
        load_dataset("mnist", "test", root=tmp_path / "nope")


def test_gtsrb_layout_fixture(tmp_path):
    """A miniature GTSRB in its own layout: per-class folders with GT-<class>.csv, ';'-separated."""
    rng = np.random.default_rng(0)
    for cls in (0, 14):
        folder = tmp_path / "Final_Training" / "Images" / f"{cls:05d}"
        folder.mkdir(parents=True)
        rows = []
        for i in range(3):
            name = f"00000_{i:05d}.ppm"
            img = np.full((40, 36, 3), 30 + 200 * (cls == 14), np.uint8) + rng.integers(0, 10, (40, 36, 3), dtype=np.uint8)
            from PIL import Image

            Image.fromarray(img).save(folder / name)
            rows.append([name, 36, 40, 4, 4, 32, 36, cls])
        with open(folder / f"GT-{cls:05d}.csv", "w", newline="") as fh:
            w = csv.writer(fh, delimiter=";")
            w.writerow(["Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId"])
            w.writerows(rows)
    ds = load_dataset("gtsrb", "train", root=tmp_path)
    assert ds.images.shape == (6, 3, 32, 32) and sorted(ds.labels.tolist()) == [0, 0, 0, 14, 14, 14]
    assert len(ds.classes) == 43
    bright = ds.images[ds.labels == 14].mean() > ds.images[ds.labels == 0].mean()
    assert bright
    (tmp_path / "Final_Training" / "Images" / "00000" / "00000_00001.ppm").unlink()
    with pytest.raises(PhysadvError, match="GT-00000.csv, line 3: image 00000_00001.ppm not found"):
        load_dataset("gtsrb", "train", root=tmp_path)


def test_imagefolder_and_corrupt_file(tmp_path):
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(5):
            write_image(tmp_path / c / f"{i}.png", torch.rand(3, 12, 12))
    train, test = load_dataset("imagefolder", "train", root=tmp_path), load_dataset("imagefolder", "test", root=tmp_path)
    assert train.classes == ["cat", "dog"] and len(train) == 8 and len(test) == 2
    (tmp_path / "dog" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(PhysadvError, match="3.png"):
        load_dataset("imagefolder", "train", root=tmp_path)


@pytest.mark.parametrize("name", architecture_names())
def test_architectures_map_images_to_logits(name):
    if name in ("vgg16", "resnet50", "inception-v3"):
        pytest.skip("large torchvision nets are checked through resnet18/googlenet")
    clf = build_classifier(name).eval()
    x = torch.rand(2, *clf.input_size)
    assert clf(x).shape == (2, clf.num_classes)
    assert clf.features(x).shape[0] == 2
    with pytest.raises(PhysadvError, match="expects"):
        clf(torch.rand(2, 3, 7, 7))


def test_normalisation_lives_inside_the_model():
    clf = build_classifier("lenet-mnist").eval()
    x = torch.rand(3, 1, 28, 28)
    manual = clf.net((x - 0.1307) / 0.3081)
    assert torch.allclose(clf(x), manual)


def test_torchvision_weights_from_a_local_file(tmp_path):
    ref = build_classifier("resnet18", [f"c{i}" for i in range(7)]).eval()
    torch.save(ref.net.state_dict(), tmp_path / "r18.pt")
    clf = load_pretrained("resnet18", str(tmp_path / "r18.pt"))
    x = torch.rand(1, 3, 224, 224)
    assert clf.num_classes == 7 and torch.allclose(clf(x), ref(x), atol=1e-5)
    with pytest.raises(PhysadvError, match="r18.pt"):
        load_pretrained("googlenet", str(tmp_path / "r18.pt"))


def test_training_is_seeded_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("PHYSADV_CACHE", str(tmp_path))
    cfg = TrainConfig(model="lenet-mnist", epochs=1, seed=3)
    cfg.data.name, cfg.data.size = "digits", 28
    t0 = time.time()
    a = get_classifier(cfg, progress=False)
    first = time.time() - t0
    t0 = time.time()
    b = get_classifier(cfg, progress=False)
    assert time.time() - t0 < first  # reused, not retrained
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    c, _ = train_classifier(cfg, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), c.state_dict().values()))  # same seed
    save_classifier(tmp_path / "mine.safetensors", a)
    d = load_classifier(tmp_path / "mine.safetensors")
    assert d.classes == a.classes and torch.equal(d(torch.rand(2, 1, 28, 28) * 0), a(torch.rand(2, 1, 28, 28) * 0))


def test_fine_tuning_starts_from_the_init_recipes_weights(tmp_path, monkeypatch):
    """``init``: at a learning rate too small to move a weight, training returns the start's weights and accuracy;
    from scratch (no init) it does not. A start of another model is a one-line config error naming ``init``."""
    monkeypatch.setenv("PHYSADV_CACHE", str(tmp_path))
    data = {"name": "digits", "size": 28}
    start = from_dict(TrainConfig, {"model": "lenet-mnist", "data": data, "epochs": 1, "seed": 3}, "test")
    still = from_dict(TrainConfig, {"model": "lenet-mnist", "data": data, "epochs": 1, "seed": 4, "lr": 1e-12,
                                    "init": to_dict(start)}, "test")
    assert still.cache_key() != replace(still, init=None).cache_key()
    base = get_classifier(start, progress=False).state_dict()
    tuned, metrics = train_classifier(still, progress=False)
    assert all(torch.allclose(tuned.state_dict()[k].float(), base[k].float(), atol=1e-6) for k in base)
    assert metrics["accuracy"] == cached_metrics(start)["accuracy"] > 0.5
    scratch, _ = train_classifier(replace(still, init=None), progress=False)
    assert not all(torch.allclose(scratch.state_dict()[k].float(), base[k].float(), atol=1e-3) for k in base)
    with pytest.raises(PhysadvError, match=r"\(test\): init: starts from a fc500-150-10-mnist but trains a lenet-mnist; fine-tuning keeps"):
        from_dict(TrainConfig, {"model": "lenet-mnist", "data": data,
                                "init": {"model": "fc500-150-10-mnist", "data": data}}, "test")


def test_lenet_and_fc_reach_paper_accuracy(tmp_path, monkeypatch):
    """The issue's bar: LeNet >= 97%, FC500-150-10 >= 95% on the MNIST-5k test split (trained from scratch here;
    training time is reported in metrics, not asserted: timings belong to benchmarks)."""
    for name, bar in (("lenet-mnist", 0.97), ("fc500-150-10-mnist", 0.95)):
        model, metrics = train_classifier(default_train_config(name), progress=False)
        assert metrics["accuracy"] >= bar, (name, metrics["accuracy"])


def test_saved_classifier_remembers_its_builder_arguments(tmp_path):
    from physadv.core.train import load_classifier, save_classifier

    torch.manual_seed(0)
    clf = build_classifier("gtsrb-cnn", ["a", "b", "c"], width=0.25, hidden=16).eval()
    save_classifier(tmp_path / "m.safetensors", clf)
    back = load_classifier(tmp_path / "m.safetensors")
    x = torch.rand(2, *clf.input_size)
    assert back.arch_args == {"width": 0.25, "hidden": 16} and back.classes == ["a", "b", "c"]
    assert torch.equal(back(x), clf(x))


def test_descend_steps_on_a_finite_loss_and_refuses_nan():
    from physadv.core.errors import PhysadvError
    from physadv.core.train import descend

    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = torch.optim.SGD([w], lr=0.1)
    descend(opt, (w ** 2).sum(), "toy")
    assert torch.allclose(w.detach(), torch.tensor([0.8, 1.6]))  # w - 0.1 * 2w
    with pytest.raises(PhysadvError, match=r"toy at step 3: the loss became nan; lower lr"):
        descend(opt, (w * float("nan")).sum(), "toy at step 3", "lower lr")
    assert torch.allclose(w.detach(), torch.tensor([0.8, 1.6]))  # nothing stepped
