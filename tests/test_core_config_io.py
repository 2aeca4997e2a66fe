"""core.config and core.io: strict configs, overrides, atomic safetensors checkpoints, safe image reading."""
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from PIL import Image

from physadv.core.config import added_later, config_hash, load_config, parse_overrides, save_config
from physadv.core.errors import PhysadvError
from physadv.core.io import (atomic_path, load_checkpoint, load_state_into, load_torch_weights, read_image, save_checkpoint,
                     write_image)


@dataclass
class Optim:
    lr: float = 0.1
    name: str = "sgd"


@dataclass
class Job:
    epochs: int = 3
    optim: Optim = field(default_factory=Optim)
    sizes: list[int] = field(default_factory=lambda: [1, 2])


def test_unknown_key_names_key_and_file(tmp_path):
    cfg = tmp_path / "job.yaml"
    cfg.write_text("epochs: 2\noptim:\n  lrr: 0.5\n")
    with pytest.raises(PhysadvError) as err:
        load_config(Job, cfg)
    msg = str(err.value)
    assert "optim.lrr" in msg and str(cfg) in msg and "did you mean 'lr'" in msg


def test_wrong_type_names_field(tmp_path):
    cfg = tmp_path / "job.yaml"
    cfg.write_text("epochs: many\n")
    with pytest.raises(PhysadvError, match="epochs.*integer"):
        load_config(Job, cfg)


def test_overrides_nested_and_typed(tmp_path):
    cfg = tmp_path / "job.yaml"
    cfg.write_text("epochs: 2\n")
    job = load_config(Job, cfg, ["optim.lr=0.25", "sizes=[3, 4, 5]", "optim.name=adam"])
    assert job.epochs == 2 and job.optim.lr == 0.25 and job.optim.name == "adam" and job.sizes == [3, 4, 5]
    assert parse_overrides(["a.b.c=1"]) == {"a": {"b": {"c": 1}}}
    with pytest.raises(PhysadvError, match="optim.nope"):
        load_config(Job, cfg, ["optim.nope=1"])


def test_resolved_config_round_trips(tmp_path):
    job = load_config(Job, None, ["epochs=7"])
    save_config(job, tmp_path / "config.yaml")
    again = load_config(Job, tmp_path / "config.yaml")
    assert again == job and config_hash(again) == config_hash(job)
    assert config_hash(load_config(Job, None, ["epochs=8"])) != config_hash(job)


@dataclass
class JobWithLaterOptions(Job):
    """``Job`` as a later release has it: two options added after results were cached under Job's hashes."""

    warmup: int = added_later(0)
    tags: dict = added_later(factory=dict)


def test_options_added_later_leave_the_hashes_of_configs_without_them_alone(tmp_path):
    assert config_hash(JobWithLaterOptions()) == config_hash(Job())
    assert config_hash({"cfg": JobWithLaterOptions(epochs=4), "members": ["a"]}) == config_hash({"cfg": Job(epochs=4), "members": ["a"]})
    assert config_hash(JobWithLaterOptions(warmup=5)) != config_hash(Job())
    assert config_hash(JobWithLaterOptions(tags={"a": 1})) != config_hash(Job())
    save_config(JobWithLaterOptions(), tmp_path / "config.yaml")  # the resolved config a run writes still shows them
    assert "warmup: 0" in (tmp_path / "config.yaml").read_text()


def test_checkpoint_round_trip_with_metadata(tmp_path):
    tensors = {"w": torch.randn(3, 4), "step": torch.tensor(17)}
    save_checkpoint(tmp_path / "c.safetensors", tensors, {"arch": "lenet", "classes": ["a", "b"]})
    back, meta = load_checkpoint(tmp_path / "c.safetensors")
    assert torch.equal(back["w"], tensors["w"]) and int(back["step"]) == 17
    assert meta == {"arch": "lenet", "classes": ["a", "b"]}
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]  # no temp files left


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "x.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old" and len(list(tmp_path.iterdir())) == 1


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(PhysadvError, match="bad.safetensors"):
        load_checkpoint(bad)


def test_no_pickle_for_torch_weights(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    path = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(1), "payload": Evil()}, path)
    with pytest.raises(PhysadvError, match="evil.pt"):
        load_torch_weights(path)
    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(2)}, good)
    assert torch.equal(load_torch_weights(good)["w"], torch.ones(2))


def test_wrong_architecture_weights_named(tmp_path):
    a, b = torch.nn.Linear(4, 3), torch.nn.Linear(5, 3)
    with pytest.raises(PhysadvError, match="weights.pt.*shape"):
        load_state_into(b, a.state_dict(), "weights.pt")


def test_image_round_trip_and_dpi(tmp_path):
    img = torch.rand(3, 20, 30)
    write_image(tmp_path / "a.png", img, dpi=300)
    back = read_image(tmp_path / "a.png")
    assert back.shape == (3, 20, 30) and (back - img).abs().max() <= 0.5 / 255 + 1e-6
    assert Image.open(tmp_path / "a.png").info["dpi"] == pytest.approx((300, 300), abs=0.01)


def test_truncated_png_names_the_file(tmp_path):
    write_image(tmp_path / "full.png", torch.rand(3, 64, 64))
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(PhysadvError, match="cut.png"):
        read_image(tmp_path / "cut.png")


def test_exif_orientation_is_applied(tmp_path):
    # a 2x3 (h x w) image with a red top-left pixel, saved with EXIF orientation 6 (rotate 90 degrees clockwise)
    arr = np.zeros((2, 3, 3), np.uint8)
    arr[0, 0] = (255, 0, 0)
    im = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(tmp_path / "rot.png", exif=exif.tobytes())
    shown = read_image(tmp_path / "rot.png")
    assert shown.shape == (3, 3, 2)  # displayed upright: 3 high, 2 wide
    # rotating 90 degrees clockwise moves the top-left pixel to the top-right
    assert shown[0, 0, 1] > 0.9 and shown[0, 0, 0] < 0.1
