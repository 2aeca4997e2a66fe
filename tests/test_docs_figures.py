"""docs/figures.py: a registry entry runs its job into a fresh folder, copies the files into docs/ with their
provenance (docs/figures.md, PNG text chunks) and rewrites its block (README or docs/*.md) from the job's metrics."""
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
JOB = ("{python} -c \"import json, sys; from PIL import Image; out = sys.argv[1]; "
       "Image.new('RGB', (4, 3), (255, 0, 0)).save(out + '/plot.png'); "
       "json.dump({'rate': 0.5}, open(out + '/metrics.json', 'w'))\" {out}")


@pytest.fixture(scope="module")
def figures():
    spec = importlib.util.spec_from_file_location("docs_figures", ROOT / "docs" / "figures.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["docs_figures"] = mod  # dataclasses resolve their annotations through the module
    spec.loader.exec_module(mod)
    return mod


def test_an_entry_writes_its_figure_with_command_and_commit(figures, tmp_path):
    docs, readme, runs = tmp_path / "docs", tmp_path / "README.md", tmp_path / "runs"
    readme.write_text("intro\n<!-- physadv:tiny -->\nold number 0.1\n<!-- /physadv:tiny -->\nend\n")
    tiny = figures.Figure("tiny", JOB, {"sub/plot.png": "plot.png"}, block=lambda m: f"rate **{m['rate']:.0%}**", about="a test")
    manual = figures.Figure("never", "{python} -c \"raise SystemExit(3)\"", {}, manual=True)
    argv = ["--docs", str(docs), "--readme", str(readme), "--runs", str(runs)]
    assert figures.main(argv, figures=[tiny, manual]) == 0           # the manual entry is not run unless named
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    with Image.open(docs / "sub" / "plot.png") as im:
        text = dict(im.text)
        assert im.size == (4, 3)
    assert text["physadv:command"] == JOB.replace("{python} ", "python ").replace("{out}", "DIR")
    assert text["physadv:commit"].split("+")[0] == head
    index = (docs / "figures.md").read_text()
    assert "[sub/plot.png](sub/plot.png)" in index and head in index and "a test" in index
    assert json.loads((docs / "figures.json").read_text())["sub/plot.png"]["commit"] == text["physadv:commit"]
    new = readme.read_text()
    assert new.startswith("intro\n<!-- physadv:tiny -->\nrate **50%**\n<!-- written by docs/figures.py") and new.endswith(
        "<!-- /physadv:tiny -->\nend\n") and "old number" not in new
    assert figures.main([*argv, "--only", "nope"], figures=[tiny]) == 2
    with pytest.raises(RuntimeError, match="never.*exited with 3"):
        figures.main([*argv, "--only", "never"], figures=[tiny, manual])
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="no block <!-- physadv:tiny -->"):
        figures.main(argv, figures=[tiny])
    page = docs / "page.md"                                           # a block may live in a page of docs/ instead
    page.write_text("# page\n<!-- physadv:tiny -->\n<!-- /physadv:tiny -->\n")
    assert figures.main(argv, figures=[tiny]) == 0
    assert "\nrate **50%**\n" in page.read_text() and readme.read_text() == "no markers\n"
    readme.write_text("<!-- physadv:tiny -->\n<!-- /physadv:tiny -->\n")      # but in one page only
    with pytest.raises(ValueError, match="more than one block <!-- physadv:tiny -->"):
        figures.main(argv, figures=[tiny])


def test_entries_sharing_a_command_run_it_once(figures, tmp_path):
    """One recipe collected twice (two draws of the zoo) is one hour-long run, not two, when both are named."""
    runs_log = tmp_path / "ran.txt"
    job = JOB.replace("open(out + '/metrics.json', 'w'))",
                      f"open(out + '/metrics.json', 'w')); open(r'{runs_log}', 'a').write('x')")
    assert job != JOB
    docs, readme = tmp_path / "docs", tmp_path / "README.md"
    readme.write_text("<!-- physadv:a -->\n<!-- /physadv:a -->\n<!-- physadv:b -->\n<!-- /physadv:b -->\n")
    a = figures.Figure("a", job, {"a.png": "plot.png"}, block=lambda m: f"a {m['rate']:.0%}")
    b = figures.Figure("b", job, {"b.png": "plot.png"}, block=lambda m: f"b {m['rate']:.0%}")
    argv = ["--docs", str(docs), "--readme", str(readme), "--runs", str(tmp_path / "runs")]
    assert figures.main(argv, figures=[a, b]) == 0
    assert runs_log.read_text() == "x"                                 # the command ran once...
    assert (docs / "a.png").is_file() and (docs / "b.png").is_file()   # ...and both entries took its files
    assert "a 50%" in readme.read_text() and "b 50%" in readme.read_text()
    assert "collected from" not in (docs / "figures.md").read_text()  # run by this invocation, not collected
    assert figures.main(argv, figures=[a]) == 0 and runs_log.read_text() == "xx"  # a new invocation runs it again


def test_the_registry_names_real_commands_and_the_demo_is_manual(figures):
    names = {f.name: f for f in figures.FIGURES}
    assert {"deepfool", "spatial_landscape", "wgan_gp_figure3", "demo"} <= set(names)
    assert names["demo"].manual and names["demo"].block is not None
    for f in figures.FIGURES:
        words = f.command.split()
        assert words[0] in ("physadv", "{python}") and "{out}" in f.command
        if words[0] == "{python}":
            assert (ROOT / words[1]).is_file(), words[1]


def test_collect_takes_a_finished_runs_files_without_running_the_command(figures, tmp_path):
    docs, readme, made = tmp_path / "docs", tmp_path / "README.md", tmp_path / "made"
    readme.write_text("<!-- physadv:slow -->\n<!-- /physadv:slow -->\n")
    made.mkdir()
    Image.new("RGB", (5, 2)).save(made / "plot.png")
    (made / "metrics.json").write_text(json.dumps({"rate": 0.25}))
    slow = figures.Figure("slow", "{python} -c \"raise SystemExit(3)\" {out}", {"plot.png": "plot.png"},
                          block=lambda m: f"rate {m['rate']:.0%}", manual=True)
    argv = ["--docs", str(docs), "--readme", str(readme), "--only", "slow"]
    assert figures.main([*argv, "--collect", str(made)], figures=[slow]) == 0   # the failing command never ran
    with Image.open(docs / "plot.png") as im:
        assert im.size == (5, 2)
    assert "rate 25%" in readme.read_text()
    assert f"collected from {made}" in (docs / "figures.md").read_text()
    with pytest.raises(FileNotFoundError, match="no such folder"):
        figures.main([*argv, "--collect", str(tmp_path / "missing")], figures=[slow])
    assert figures.main(["--docs", str(docs), "--readme", str(readme), "--collect", str(made)], figures=[slow]) == 2


def test_every_block_of_the_registry_lives_in_one_page_and_every_picture_link_resolves(figures):
    """A block moved or deleted by hand would only fail when its hour-long command is run again; a picture link
    broken by a move would show nothing. Checked here on the real README and docs/ pages."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    texts = {p: p.read_text() for p in pages}
    for f in figures.FIGURES:
        if f.block is None:
            continue
        start, end = f"<!-- physadv:{f.name} -->", f"<!-- /physadv:{f.name} -->"
        holding = [p for p, t in texts.items() if start in t]
        assert len(holding) == 1, (f.name, holding)
        assert texts[holding[0]].index(start) < texts[holding[0]].index(end), f.name
    for p, t in texts.items():
        for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", t):
            assert (p.parent / target).is_file(), f"{p.name}: picture {target} does not exist"
        for target in re.findall(r"(?<!!)\[[^\]]*\]\(([^)\s#]+\.md)(?:#[^)]*)?\)", t):
            assert (p.parent / target).is_file(), f"{p.name}: link {target} does not exist"


def test_the_leave_one_out_table_shows_the_plain_models_apart_only_when_robust_copies_were_the_members(figures):
    row = {"held_out": "gtsrb-cnn", "targeted": 0.2, "untargeted": 1.0, "members_targeted_min": 0.9, "coverage": 0.3}
    plain = figures.transfer_tables({"leave_one_out": [{**row, "others_targeted_min": 0.9}]})
    robust = figures.transfer_tables({"leave_one_out": [{**row, "others_targeted_min": 0.6}, {**row, "held_out": "vgg-bn"}]})
    assert "other plain models" not in plain
    header, rule, first, second = robust.splitlines()[1:5]
    assert "| the other plain models targeted, at least |" in header
    assert header.count("|") == rule.count("|") == first.count("|") == second.count("|")
    assert first.endswith("| 30.0% | 60.0% |") and second.endswith("| 30.0% | 90.0% |")  # no column: the members'
