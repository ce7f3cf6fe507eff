"The bench commands (nbs/10_bench.ipynb) produce their tables on a tiny budget."
import csv
import json

import numpy as np
import pytest
import torch

from PIL import Image

from surgdiff.bench import BaselineGeneratorAdapter, eval_data, load_generator, markdown_table, other_style
from surgdiff.cli import main


@pytest.fixture(autouse=True)
def one_thread():
    "Each test on one torch thread (small models on a shared CPU); the thread count is restored after."
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_bench_steps_writes_table_csv_json_figure(tmp_path, capsys):
    out = tmp_path / "steps"
    assert main(["bench", "steps", "--n", "4", "--steps", "3", "1", "--out", str(out), "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["figure.png", "results.csv", "results.json", "results.md"]
    assert out.stat().st_mode & 0o055 == 0o055        # readable by others, not mkdtemp's 0700
    rows = read_csv(out / "results.csv")
    assert [r["steps"] for r in rows] == ["3", "1"]
    for r in rows:
        assert 5 < float(r["psnr"]) < 40 and 0 < float(r["ssim"]) <= 1 and float(r["fid"]) > 0
        assert 0 <= float(r["miou"]) <= 1 and float(r["seconds_per_image"]) > 0 and r["n"] == "4"
    md = (out / "results.md").read_text()
    assert "| 3 |" in md and "FID/KID protocol" in md and "surgdiff bench steps" in md
    assert json.loads((out / "results.json").read_text())["rows"][0]["steps"] == 3
    assert "| steps | PSNR" in capsys.readouterr().out
    # the same command again is refused and leaves the folder as it was
    before = sorted(p.name for p in out.iterdir())
    assert main(["bench", "steps", "--n", "4", "--steps", "1", "--out", str(out), "--quiet"]) == 2
    assert sorted(p.name for p in out.iterdir()) == before


def test_bench_compare_with_a_baseline_and_the_reference_row(tmp_path):
    run = tmp_path / "p2p"
    assert main(["train-baseline", "pix2pix", "--steps", "3", "--batch-size", "2", "--out", str(run), "--quiet"]) == 0
    assert isinstance(load_generator(str(run)), BaselineGeneratorAdapter) and (run / "latest.json").exists()
    out = tmp_path / "compare"
    assert main(["bench", "compare", "--model", "diffusion=demo", "--model", f"pix2pix={run}", "--steps", "2",
                 "--n", "4", "--no-fid", "--diversity-labels", "2", "--out", str(out), "--quiet"]) == 0
    rows = {r["model"]: r for r in read_csv(out / "results.csv")}
    assert list(rows) == ["diffusion", "pix2pix", "real, other style"]
    assert float(rows["diffusion"]["diversity_pixel"]) > 0.01      # different seeds, different images
    assert float(rows["real, other style"]["miou"]) > float(rows["pix2pix"]["miou"])  # 3 training steps vs real
    w, h = Image.open(out / "figure19.png").size       # label map, real and two models: columns >= 2.5 in at 100 dpi
    assert w >= 4 * 250 and h >= 4 * 100                # 4 maps, one per row


def test_bench_downstream_rows(tmp_path):
    out = tmp_path / "down"
    assert main(["bench", "downstream", "--real", "4", "--per-label", "1", "--new", "4", "--n", "8",
                 "--train-steps", "5", "--steps", "1", "--out", str(out), "--quiet"]) == 0
    rows = read_csv(out / "results.csv")
    assert [r["training data"] for r in rows][0] == "real only" and len(rows) == 3
    assert "Δ mIoU" in (out / "results.md").read_text()


def test_bench_rejects_bad_input(tmp_path, capsys):
    assert main(["bench", "compare", "--model", "x=", "--out", str(tmp_path / "o")]) == 2
    assert "NAME=SPEC" in capsys.readouterr().err
    assert main(["bench", "steps", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "no model folder" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o.partial-*"))
    with pytest.raises(ValueError, match="at least 2"):
        eval_data(n=1)


def test_eval_data_and_reference_are_deterministic():
    a, b = eval_data(n=3), eval_data(n=3)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    ref = other_style(a)
    assert ref.shape == a.images.shape and not np.array_equal(ref, a.images)
    assert "| x |" in markdown_table([{"k": "x", "psnr": 1.0}], "k", "k")


def test_demo_means_the_cascade_unless_a_size_says_otherwise():
    from surgdiff.bench import ResizedGenerator, at_size, native_size
    from surgdiff.cascade import Cascade
    full, base = load_generator("demo"), load_generator("demo", size=(64, 112))
    assert isinstance(full.model, Cascade) and native_size(full) == (256, 448)
    assert not isinstance(base.model, Cascade) and native_size(base) == (64, 112)
    assert isinstance(load_generator("demo+demo-sr").model, Cascade) and "lifted to 256×448" in full.describe()
    with pytest.raises(ValueError, match="super-resolution stage"):
        load_generator("demo-sr")
    # a generator at another size draws at its own and is enlarged: 2 label maps of 256x448 -> 2 images of 256x448
    big = at_size(base, (256, 448))
    assert isinstance(big, ResizedGenerator) and at_size(base, (64, 112)) is base
    labels = eval_data(n=2, size=(256, 448)).labels
    base.steps = 2
    assert big(labels, 0).shape == (2, 256, 448, 3)
