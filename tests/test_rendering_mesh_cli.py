"""``physadv render``: a contact sheet from a config, and one-line errors for bad input."""
import json

import numpy as np
import trimesh

from physadv.core.io import read_image
from physadv.physical.cli import main

SMALL = ["--set", "views=2", "--set", "poses.image_size=[48,48]", "--set", "supersample=1"]


def test_render_writes_contact_sheets(tmp_path):
    out = tmp_path / "run"
    assert main(["render", "--config", "configs/rendering/stop_sign.yaml", *SMALL, "--set", "export=true", "--out", str(out)]) == 0
    for name in ("views.png", "views_eot.png", "config.yaml", "metrics.json", "fragments.safetensors", "mesh.obj"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["views"] == 2 and metrics["faces"] > 32 and 0 < metrics["coverage_mean"] < 1
    sheet = read_image(out / "views.png")
    assert sheet.std() > 0.05  # not blank


def test_render_a_mesh_file_and_bad_input(tmp_path, capsys):
    plain = tmp_path / "ball.ply"
    trimesh.creation.icosphere(2, radius=0.3).export(plain)
    args = ["render", "--config", "configs/rendering/sphere.yaml", *SMALL, "--set", "mesh.kind=file",
            "--set", f"mesh.path={plain}", "--out", str(tmp_path / "a")]
    assert main(args) == 2
    assert "no UV" in capsys.readouterr().err
    assert main(args[:-1] + [str(tmp_path / "b"), "--set", "mesh.auto_uv=true"]) == 0
    assert main(["render", *SMALL, "--set", "poses.distance=[9,2]", "--out", str(tmp_path / "c")]) == 2
    assert "distance" in capsys.readouterr().err
    assert np.isfinite(read_image(tmp_path / "b" / "views.png").numpy()).all()
