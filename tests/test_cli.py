"""The `surgdiff` console script: its main job works, and bad input gives one line and a non-zero exit."""
import subprocess
import sys

import numpy as np
from PIL import Image

from surgdiff.cli import main
from surgdiff.data import CaDISDataset, colorize, write_synthetic_cadis


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


# --- train / sample / make-dataset -------------------------------------------------------------

import json

import pytest
import torch

from surgdiff.train import TrainConfig, train
from conftest import MICRO

MICRO = {**MICRO, "dropout": 0.0}  # the shared micro U-Net, deterministic


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "micro"
    cfg = TrainConfig(model=MICRO, image_size=(16, 16), synthetic_scenes=16, steps=3, batch_size=4, sample_every=0,
                      checkpoint_every=3, num_threads=1, bf16=False, out=str(out))
    train(cfg, progress=False)
    return out


def one_line_error(r, *fragments):
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    for f in fragments:
        assert f in r.stderr, r.stderr


def test_sample_writes_images_labels_and_sheet(micro_run, tmp_path):
    out = tmp_path / "s"
    assert main(["sample", "--model", str(micro_run), "--steps", "3", "--out", str(out), "--quiet"]) == 0
    stems = sorted(p.stem for p in out.glob("scene*.png"))
    assert len(stems) == 16 and "scene00" in stems and "scene00_label" in stems  # 8 bundled maps, image + label
    assert Image.open(out / "scene03.png").size == (16, 16) and (out / "contact_sheet.png").exists()
    again = tmp_path / "t"
    assert main(["sample", "--model", str(micro_run), "--steps", "3", "--out", str(again), "--quiet"]) == 0
    assert (out / "scene03.png").read_bytes() == (again / "scene03.png").read_bytes()  # same seed, same image


def test_make_dataset_is_a_cadis_tree(micro_run, tmp_path):
    labels = tmp_path / "labels"
    write_synthetic_cadis(tmp_path / "src", videos=[5, 7], frames_per_video=2, size=(16, 16))
    labels.mkdir()
    for p in (tmp_path / "src").glob("Video*/Labels/*.png"):
        (labels / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "gen"
    assert main(["make-dataset", "--model", str(micro_run), "--labels", str(labels), "--per-label", "3", "--steps", "2",
                 "--out", str(out), "--quiet"]) == 0
    ds = CaDISDataset(out, "val", size=None)
    assert len(ds) == 4 * 3
    names = sorted(p.name for p in (out / "Video05" / "Images").glob("*.png"))
    assert names == [f"Video5_frame{f:06d}.png" for f in (0, 10, 20, 30, 40, 50)]
    # every generated image sits beside the label map it was generated from
    src = np.asarray(Image.open(labels / "Video5_frame000010.png"))
    assert all(np.array_equal(np.asarray(Image.open(out / "Video05/Labels" / f"Video5_frame{f:06d}.png")), src)
               for f in (30, 40, 50))


def test_sample_error_paths(micro_run, tmp_path):
    one_line_error(run("sample", "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "o")), "no model called")
    bad = tmp_path / "bad.png"
    Image.fromarray(np.full((16, 16), 40, np.uint8)).save(bad)
    one_line_error(run("sample", "--model", str(micro_run), "--labels", str(bad), "--out", str(tmp_path / "o")),
                   "bad.png has ids outside")
    one_line_error(run("sample", "--model", str(micro_run), "--labels", str(tmp_path / "nope"), "--out", str(tmp_path / "o")),
                   "no such file or folder")
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o.partial-*"))


def test_model_folder_with_missing_or_mismatched_config(micro_run, tmp_path):
    from surgdiff.model import export_model
    folder = export_model(micro_run, tmp_path / "m")
    (folder / "config.json").unlink()
    one_line_error(run("sample", "--model", str(folder), "--out", str(tmp_path / "o")), "config.json")
    folder = export_model(micro_run, tmp_path / "m2")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["unet"]["num_classes"] = 8
    cfg["grouping"] = "exp1"  # a config for a different class count than the weights
    (folder / "config.json").write_text(json.dumps(cfg))
    one_line_error(run("sample", "--model", str(folder), "--out", str(tmp_path / "o")), "do not match the model/config")
    assert not (tmp_path / "o").exists()


def test_train_error_paths(tmp_path):
    one_line_error(run("train", "--config", "nonsense"), "neither a file nor a preset")
    one_line_error(run("train", "--data", str(tmp_path / "nope")), "no such folder")
    cfgfile = tmp_path / "c.json"
    cfgfile.write_text(json.dumps({"steps": 1, "colour": "red"}))
    one_line_error(run("train", "--config", str(cfgfile)), "unknown TrainConfig fields")


def test_train_command_runs_and_resumes(tmp_path):
    cfg = TrainConfig(model=MICRO, image_size=(16, 16), synthetic_scenes=8, steps=2, batch_size=2, sample_every=0,
                      checkpoint_every=2, num_threads=1, bf16=False, out=str(tmp_path / "r"))
    (tmp_path / "c.json").write_text(json.dumps(cfg.to_dict()))
    assert main(["train", "--config", str(tmp_path / "c.json"), "--quiet"]) == 0
    assert main(["train", "--config", str(tmp_path / "c.json"), "--steps", "4", "--resume", "--quiet"]) == 0
    assert json.loads((tmp_path / "r" / "latest.json").read_text())["step"] == 4
    one_line_error(run("train", "--config", str(tmp_path / "c.json"), "--quiet"), "already has checkpoints")


def test_bundled_labels_are_the_documented_synthetic_scenes():
    from surgdiff.cli import bundled_labels
    from surgdiff.data import synthetic_scene
    files = bundled_labels()
    assert len(files) == 8
    for i, f in enumerate(files):
        assert np.array_equal(np.asarray(Image.open(f)), synthetic_scene(2_000_000 + i, (256, 448))[1])


# --- real CaDIS-sized label maps, and the model's own sampling settings ------------------------

def test_real_sized_label_folder_through_the_cli(micro_run, tmp_path):
    from surgdiff.data import synthetic_scene
    labels = tmp_path / "Labels"
    labels.mkdir()
    a, b = synthetic_scene(5, (540, 960))[1], synthetic_scene(6, (540, 960))[1]
    Image.fromarray(a).save(labels / "Video1_frame000090.png")                       # grey ("L"), as released
    Image.fromarray(np.stack([b] * 3, -1)).save(labels / "Video8_frame020150.png")   # RGB, three equal channels
    out = tmp_path / "o"
    r = run("sample", "--model", str(micro_run), "--labels", str(labels), "--steps", "2", "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("resized 2 label map(s) (2 from 540x960) to the model's 16x16") == 1, r.stdout
    assert sorted(p.name for p in out.glob("Video*.png")) == [
        "Video1_frame000090.png", "Video1_frame000090_label.png", "Video8_frame020150.png", "Video8_frame020150_label.png"]
    assert Image.open(out / "Video8_frame020150.png").size == (16, 16)
    want = np.asarray(Image.fromarray(b).resize((16, 16), Image.NEAREST))
    assert np.array_equal(np.asarray(Image.open(out / "Video8_frame020150_label.png")), colorize(want))


def test_python_and_cli_give_the_same_pixels(micro_run, tmp_path):
    from surgdiff.samplers import sample
    from surgdiff.model import export_model, load_pretrained
    rec = dict(sampler="ddim", steps=3, guidance=2.0, clip=1.0)
    folder = export_model(micro_run, tmp_path / "m", sampling=rec)
    assert json.loads((folder / "config.json").read_text())["sampling"] == rec
    labels = tmp_path / "L"
    labels.mkdir()
    from surgdiff.data import synthetic_scene
    lab = synthetic_scene(9, (16, 16))[1]
    Image.fromarray(lab).save(labels / "x.png")
    assert main(["sample", "--model", str(folder), "--labels", str(labels), "--out", str(tmp_path / "o"), "--seed", "4",
                 "--quiet"]) == 0
    model = load_pretrained(folder)
    x = sample(model, model.prepare_label(torch.from_numpy(lab[None].astype(np.int64))),
               generator=torch.Generator().manual_seed(4), progress=False)
    py = ((x.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()[0]
    assert np.array_equal(py, np.asarray(Image.open(tmp_path / "o" / "x.png")))
    # the recommendation is what made them equal: other settings give other pixels
    other = sample(model, model.prepare_label(torch.from_numpy(lab[None].astype(np.int64))), guidance=1.0,
                   generator=torch.Generator().manual_seed(4), progress=False)
    assert not torch.equal(other, x)
