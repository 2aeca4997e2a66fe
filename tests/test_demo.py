"""`physadv demo --quick`: every artefact exists, the report shows the numbers the run computed, and the headline
claim holds on its small grid (a bar, not only a comparison with its own report)."""
import csv
import json
import re

import numpy as np
import pytest

from physadv.physical.cli import main


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--quick", "--out", str(out), "--device", "cpu"]) == 0
    return out


def test_demo_writes_every_artefact(demo_run):
    out = demo_run
    for rel in ("report.html", "metrics.json", "config.yaml", "design/texture.png", "design/texture.safetensors",
                "design/stickers.png", "design/loss.png", "print/stickers/stickers.pdf", "print/stickers/stickers.png",
                "print/adversarial/adversarial.pdf", "print/adversarial/layout.json", "print/clean/clean.pdf",
                "capture/adversarial/manifest.csv", "capture/clean/manifest.csv", "capture/report/report.html",
                "capture/report/report.json", "capture/report/transfer.csv", "digital/deepfool.png"):
        assert (out / rel).is_file(), rel
    assert list((out / "digital" / "gan" / "samples").glob("step_*.png"))
    layout = json.loads((out / "print" / "adversarial" / "layout.json").read_text())
    assert len(layout["markers"]) == 4
    with open(out / "capture" / "adversarial" / "manifest.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {float(r["distance"]) for r in rows} == {5.0, 20.0, 40.0}


def test_demo_report_numbers_are_the_runs(demo_run):
    metrics = json.loads((demo_run / "metrics.json").read_text())
    capture = json.loads((demo_run / "capture" / "report" / "report.json").read_text())
    photos = [p for p in capture["photos"] if p["status"] == "ok"]
    adv = [p for p in photos if p["set"] == "adversarial"]
    clean = [p for p in photos if p["set"] == "clean"]
    s = metrics["capture"]
    # recomputed from the per-photo verdicts capture wrote (the first member's own top class)
    assert s["adversarial_photos"] == len(adv) and s["clean_photos"] == len(clean)
    first = metrics["plan"]["victims"][0]
    assert s["models"][first]["targeted_success"] == pytest.approx(np.mean([p["top1"] == "speed_limit_80" for p in adv]))
    assert s["models"][first]["clean_accuracy"] == pytest.approx(np.mean([p["top1"] == "stop" for p in clean]))
    assert s["targeted_success"] == min(m["targeted_success"] for m in s["models"].values() if m["role"] == "white-box")
    page = (demo_run / "report.html").read_text()
    shown = {k: float(v) / 100 for k, v in re.findall(r"id='(targeted|clean|held_out_untargeted)'>([\d.]+)%", page)}
    assert shown["targeted"] == pytest.approx(s["targeted_success"], abs=0.0006)
    assert shown["clean"] == pytest.approx(s["clean_accuracy"], abs=0.0006)
    assert shown["held_out_untargeted"] == pytest.approx(s["held_out_untargeted"], abs=0.0006)
    assert page.count("data:image/png;base64,") >= 5  # texture, stickers, photos, digital grids inlined
    assert 0 < metrics["rp2"]["mask_coverage"] <= 0.15
    assert metrics["digital"]["deepfool"]["success"] > 0.9


def test_demo_headline_claim_holds_on_its_small_grid(demo_run):
    """The quick demo's own bar (toy sizes: 30 RP2 steps, 6 photos per set): the clean print is read as "stop" and
    the stickers make the white-box model read "speed limit 80" on the photos of the print."""
    s = json.loads((demo_run / "metrics.json").read_text())["capture"]
    assert s["adversarial_photos"] >= 5 and s["clean_photos"] >= 5  # of 6 each (at 40 ft and 45 degrees the toy
    # 1280 x 960 photo of a 60 DPI print may lose the fiducials)
    assert s["clean_accuracy"] >= 0.8
    assert s["targeted_success"] >= 0.8


def test_docs_demo_block_reads_the_runs_metrics(demo_run):
    """docs/figures.py's README block for the demo names every judged model with the rates the run wrote (a renamed
    metrics key is a clear error there, not a stale README)."""
    import importlib.util
    import sys
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("docs_figures", Path(__file__).parents[1] / "docs" / "figures.py")
    figures = importlib.util.module_from_spec(spec)
    sys.modules["docs_figures"] = figures  # dataclasses resolve their annotations through the module
    spec.loader.exec_module(figures)
    metrics = json.loads((demo_run / "metrics.json").read_text())
    block = figures.demo_numbers(metrics)
    for name, m in metrics["capture"]["models"].items():
        assert f"| {name} | {m['role']} | {m['clean_accuracy']:.1%} | {m['targeted_success']:.1%} |" in block
    del metrics["capture"]["models"]
    with pytest.raises(KeyError, match="capture.models"):
        figures.demo_numbers(metrics)


def test_the_demos_design_recipe_is_the_shipped_one_whatever_the_working_directory_holds(tmp_path, monkeypatch):
    """A working directory's ``configs/physical/rp2_zoo.yaml`` (here another target and 3 steps) must not stand in
    for the shipped recipe the demo designs with."""
    from physadv.core.config import load_config
    from physadv.physical.demo import DemoPlan
    from physadv.physical.design_cli import RP2Job

    decoy = tmp_path / "configs" / "physical"
    decoy.mkdir(parents=True)
    (decoy / "rp2_zoo.yaml").write_text("source: stop\ntarget: yield\nsteps: 3\n")
    monkeypatch.chdir(tmp_path)
    job = load_config(RP2Job, DemoPlan().rp2_config)
    assert (job.target, job.steps, job.search_steps) == ("speed_limit_80", 400, 750)


def test_the_demos_robust_surrogates_are_checked_in_one_line():
    """``robust_eps_255`` (the stickers designed on the victims' robust copies) out of range, or with the quick sign
    set whose models have no robust copies, is a one-line error naming the key, before anything trains."""
    from physadv.physical.demo import demo_plan

    for quick, value in ((False, "-1"), (False, "17"), (True, "1")):
        with pytest.raises(Exception, match="robust_eps_255") as err:
            demo_plan(quick, [f"robust_eps_255={value}"])
        assert "\n" not in str(err.value)
    assert demo_plan(False, ["robust_eps_255=0"]).surrogates() == demo_plan(False).victims
    # a victim named as a copy already is designed on as named, not as a copy of a copy
    assert demo_plan(False, ["victims=[vgg-bn+pgd2,resnet-8]"]).surrogates() == ["vgg-bn+pgd2", "resnet-8+pgd1"]


def test_the_demo_refuses_an_unknown_model_before_it_makes_a_run_folder(tmp_path, capsys):
    for key, value in (("victims", "[nosuch]"), ("held_out", "[vgg-bn@x]")):
        out = tmp_path / key
        assert main(["demo", "--set", f"{key}={value}", "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and value.strip("[]") in err[0]
        assert not out.exists()


def test_demo_surrogates_benchmark_refuses_a_bad_list_before_any_run(tmp_path, capsys):
    """benchmarks/demo_surrogates.py: a radius or seed that is not a number is exit code 2 with a one-line message,
    and nothing is written."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "benchmarks" / "demo_surrogates.py"
    spec = importlib.util.spec_from_file_location("demo_surrogates", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for args in (["--radii", "0,one"], ["--seeds", "0,1.5"]):
        assert bench.main([*args, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip()
        assert "--radii" in err and "\n" not in err
    assert not (tmp_path / "out").exists()
