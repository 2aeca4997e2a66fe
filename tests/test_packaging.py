"""One installable namespace: physadv.<package>, no generic top-level names, configs shipped as package data."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("cwd", [ROOT, Path("/")], ids=["repository", "elsewhere"])
def test_no_generic_top_level_names(cwd):
    for name in ("core", "printing", "capture", "physical", "attacks", "gans", "rendering"):
        out = run(f"import {name}", cwd)
        assert out.returncode != 0 and ("ImportError" in out.stderr or "ModuleNotFoundError" in out.stderr), name
    assert run("import physadv.physical, physadv.attacks, physadv.core.victims", cwd).returncode == 0


def test_shipped_configs_load_from_any_directory(tmp_path):
    code = ("from physadv.core.config import load_config\nfrom physadv.physical.design_cli import RP2Job\n"
            "job = load_config(RP2Job, 'configs/physical/rp2_stop_search.yaml')\nprint(job.mask.kind, job.palette)\n"
            "from physadv.printing.printability import load_palette\nprint(len(load_palette(job.palette)))")
    out = run(code, tmp_path)
    assert out.returncode == 0, out.stderr
    kind, palette = out.stdout.split("\n")[0].split()
    assert kind == "search" and int(out.stdout.split("\n")[1]) > 10



WALK_DEFAULTS = """
import argparse, json
from pathlib import Path
from physadv.core.resources import resolve_file
from physadv.physical.cli import build_parser

def walk(p, name):
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for sub, sp in a.choices.items():
                yield from walk(sp, f"{name} {sub}")
        elif "--config" in a.option_strings and a.default:
            yield name, a.default, resolve_file(a.default)

from physadv.core.resources import packaged
root = packaged("")
print(json.dumps([[n, d, str(r), r.is_file(), Path(d).is_relative_to(root) and Path(d).relative_to(root).as_posix()]
                  for n, d, r in walk(build_parser(), "physadv")]))
"""


def test_every_command_default_config_is_found_outside_the_repository(tmp_path):
    """Each subcommand's ``--config`` default names a shipped config (``physadv.configs``); run from a folder
    without ``configs/``, every default must exist in the installed package (not the working directory), and its
    folder must be package data, or a non-editable install would miss it."""
    import json

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    out = run(WALK_DEFAULTS, tmp_path)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert len(rows) >= 20 and {"physadv capture eval", "physadv capture video", "physadv capture calibrate-camera"} <= {
        r[0] for r in rows}
    shipped = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for command, default, resolved, found, shipped_name in rows:
        assert shipped_name and found, f"{command}: --config {default} not found from {tmp_path}"
        assert not Path(resolved).is_relative_to(tmp_path), command
        folder = ".".join(["physadv", "configs", *Path(shipped_name).parent.parts])
        assert "*.yaml" in shipped.get(folder, []), f"{command}: {folder} is not package data"

@pytest.mark.slow
def test_a_plain_install_runs_the_quick_demo_from_tmp(tmp_path):
    """A non-editable ``pip install .`` into a fresh virtual environment, then ``physadv demo --quick`` from a folder
    that is not the repository (the issue's bar)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run(pip + [str(ROOT)], check=True, timeout=3600)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = dict(os.environ, PHYSADV_CACHE=str(tmp_path / "cache"), PHYSADV_PROGRESS="0")
    assert subprocess.run([str(venv / "bin" / "python"), "-c", "import core"], cwd=work, env=env).returncode != 0
    out = subprocess.run([str(venv / "bin" / "physadv"), "demo", "--quick", "--out", "demo"], cwd=work, env=env,
                         capture_output=True, text=True, timeout=3600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (work / "demo" / "report.html").is_file() and "targeted success" in out.stdout
