"""The physadv command line: jobs listed, one-line errors with exit code 2, run folders, PyTorch3D importable."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from physadv.physical.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "physadv.physical", *args], cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=600)


def test_help_lists_the_jobs():
    out = run_cli("--help")
    assert out.returncode == 0
    for job in ("demo", "classifier"):
        assert job in out.stdout


def test_the_command_line_knows_every_packages_datasets():
    code = "from physadv.physical.cli import build_parser; build_parser(); from physadv.core.data import dataset_names; print(dataset_names())"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "'signs'" in out.stdout and "'mnist'" in out.stdout, out.stderr


def test_demo_set_overrides_its_plan_and_refuses_an_unknown_key_before_any_work(tmp_path):
    from physadv.physical.demo import DemoPlan, demo_plan

    plan = demo_plan(quick=True, overrides=["balance=0.25", "lights=[normal, dim]"])
    assert plan.balance == 0.25 and plan.lights == ["normal", "dim"]
    assert plan.rp2_steps == DemoPlan.quick().rp2_steps != DemoPlan().rp2_steps  # the rest stays the quick plan
    out = run_cli("demo", "--quick", "--set", "balanse=1", "--out", str(tmp_path / "run"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "balanse" in out.stderr and "did you mean 'balance'" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()  # nothing started, nothing written


def test_unknown_config_key_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: lenet-mnist\nepochz: 3\n")
    out = run_cli("classifier", "train", "--config", str(bad), "--out", str(tmp_path / "run"))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = [l for l in out.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "epochz" in lines[0] and "bad.yaml" in lines[0]
    debug = run_cli("--debug", "classifier", "train", "--config", str(bad))
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_missing_dataset_path_and_corrupt_png(tmp_path, capsys):
    assert main(["classifier", "eval", "--set", "data.name=imagefolder", "--set", f"data.root={tmp_path}/none",
                 "--set", "model=lenet-cifar", "--out", str(tmp_path / "r")]) == 2
    assert "image folder not found" in capsys.readouterr().err
    from physadv.core.io import write_image

    for c in ("a", "b"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(3):
            write_image(tmp_path / "imgs" / c / f"{i}.png", torch.rand(3, 32, 32))
    data = (tmp_path / "imgs" / "b" / "1.png").read_bytes()
    (tmp_path / "imgs" / "b" / "1.png").write_bytes(data[:40])
    weights = tmp_path / "w.safetensors"
    from physadv.core.models import build_classifier
    from physadv.core.train import save_classifier

    save_classifier(weights, build_classifier("lenet-cifar", ["a", "b"]))
    code = main(["classifier", "eval", "--weights", str(weights), "--set", "data.name=imagefolder", "--set",
                 f"data.root={tmp_path / 'imgs'}", "--split", "train", "--out", str(tmp_path / "r2")])
    err = capsys.readouterr().err
    assert code == 2 and "1.png" in err and "corrupt" in err


def test_weights_of_the_wrong_architecture(tmp_path, capsys):
    from physadv.core.models import build_classifier

    torch.save(build_classifier("lenet-cifar").net.state_dict(), tmp_path / "lenet.pt")
    code = main(["classifier", "eval", "--model", "resnet18", "--weights", str(tmp_path / "lenet.pt"),
                 "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "lenet.pt" in err and "do not fit" in err


def test_classifier_train_writes_a_run_folder_and_reuses_cache(tmp_path):
    env = {"PHYSADV_CACHE": str(tmp_path / "cache")}
    args = ["classifier", "train", "--config", "configs/core/lenet_mnist.yaml", "--set", "epochs=1",
            "--set", "data.name=digits", "--set", "data.size=28"]
    first = run_cli(*args, "--out", str(tmp_path / "a"), env_extra=env)
    assert first.returncode == 0, first.stderr
    second = run_cli(*args, "--out", str(tmp_path / "b"), env_extra=env)
    assert "reused cached weights" in second.stdout
    for run in ("a", "b"):
        metrics = json.loads((tmp_path / run / "metrics.json").read_text())
        assert 0.0 <= metrics["accuracy"] <= 1.0
        assert "epochs: 1" in (tmp_path / run / "config.yaml").read_text()
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["reused_cache"] is True


def test_pytorch3d_rasterizes_on_cpu():
    """PyTorch3D is importable and rasterizes: a sphere's silhouette area matches the projected disc."""
    from pytorch3d.renderer import FoVOrthographicCameras, MeshRasterizer, RasterizationSettings
    from pytorch3d.utils import ico_sphere

    mesh = ico_sphere(4)  # unit sphere
    cams = FoVOrthographicCameras(T=torch.tensor([[0.0, 0.0, 3.0]]), min_x=-1.5, max_x=1.5, min_y=-1.5, max_y=1.5)
    frags = MeshRasterizer(cameras=cams, raster_settings=RasterizationSettings(image_size=96, bin_size=0))(mesh)
    covered = (frags.pix_to_face[0, ..., 0] >= 0).float().sum().item()
    expected = np.pi * (96 / 3.0) ** 2  # radius 1 in a 3-unit wide view of 96 pixels
    assert abs(covered - expected) / expected < 0.02
