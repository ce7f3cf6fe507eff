"""The `surgdiff` console script: its main job works, and bad input gives one line and a non-zero exit."""
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from surgdiff.cli import main
from surgdiff.data import CaDISDataset


def run(*args):
    return subprocess.run([sys.executable, "-c", "from surgdiff.cli import main; raise SystemExit(main())", *args],
                          capture_output=True, text=True)


def test_synth_writes_a_readable_tree(tmp_path):
    out = tmp_path / "s"
    assert main(["synth", str(out), "--videos", "2", "12", "22", "--frames", "2", "--size", "32x48", "--quiet"]) == 0
    ds = CaDISDataset(out, "test", size=None)
    assert len(ds) == 6
    sheet = np.asarray(Image.open(out / "contact_sheet.png"))
    assert sheet.ndim == 3 and sheet.shape[0] > 64


def test_synth_is_seeded(tmp_path):
    for name in ("a", "b"):
        assert main(["synth", str(tmp_path / name), "--videos", "1", "--frames", "1", "--size", "24", "--quiet"]) == 0
    f = "Video01/Images/Video1_frame000000.png"
    assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def test_existing_output_refused_and_untouched(tmp_path):
    out = tmp_path / "keep"
    out.mkdir()
    (out / "mine.txt").write_text("precious")
    r = run("synth", str(out), "--frames", "1", "--size", "16", "--quiet")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "already exists and is not empty" in r.stderr and "Traceback" not in r.stderr
    assert [p.name for p in out.iterdir()] == ["mine.txt"] and (out / "mine.txt").read_text() == "precious"
    assert not list(tmp_path.glob(".keep.partial-*"))


def test_bad_options_are_one_line_errors(tmp_path):
    r = run("synth", str(tmp_path / "x"), "--size", "axb")
    assert r.returncode == 2 and "size must look like" in r.stderr and "Traceback" not in r.stderr
    r = run("synth", str(tmp_path / "x"), "--videos", "0", "--quiet")
    assert r.returncode == 2 and "video numbers must be 1..99" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x.partial-*"))


def test_help_mentions_every_option():
    r = run("synth", "--help")
    assert r.returncode == 0
    for opt in ("--videos", "--frames", "--size", "--seed"):
        assert opt in r.stdout
