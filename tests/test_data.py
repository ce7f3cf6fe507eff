"""CaDIS reader and synthetic scenes: round trips on a synthetic tree, and every bad input refused by name."""
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from surgdiff.data import (GROUPINGS, SPLITS, CaDISDataset, colorize, compare_layouts, layout_statistics, num_classes,
                           read_label, remap,
                           synthetic_scene, write_synthetic_cadis)

SIZE = (36, 64)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cadis") / "CaDIS"
    return write_synthetic_cadis(root, videos=range(1, 26), frames_per_video=2, size=SIZE, seed=3)


def snapshot(root: Path) -> dict:
    "Every file under root with its content hash, to prove that a failed read touched nothing."
    return {p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def copy_tree(src: Path, dst: Path, videos=(5, 7, 16)) -> Path:
    for v in videos:
        for sub in ("Images", "Labels"):
            d = dst / f"Video{v:02d}" / sub
            d.mkdir(parents=True)
            for p in (src / f"Video{v:02d}" / sub).glob("*.png"):
                (d / p.name).write_bytes(p.read_bytes())
    return dst


def test_layout_and_naming(tree):
    names = sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*.png"))
    assert "Video01/Images/Video1_frame000000.png" in names
    assert "Video25/Labels/Video25_frame000010.png" in names
    assert len(names) == 25 * 2 * 2
    lab = Image.open(tree / "Video01/Labels/Video1_frame000010.png")
    assert lab.mode == "L" and lab.size == (SIZE[1], SIZE[0])


@pytest.mark.parametrize("split", list(SPLITS))
@pytest.mark.parametrize("grouping", [None, "exp1", "exp2", "exp3"])
def test_round_trip_every_split_and_grouping(tree, split, grouping):
    ds = CaDISDataset(tree, split, grouping=grouping, size=None)
    assert len(ds) == 2 * len(SPLITS[split])
    for i in range(len(ds)):
        x, y = ds[i]
        img_path, lab_path = ds.items[i]
        want_lab = remap(np.asarray(Image.open(lab_path)), grouping)
        want_img = np.asarray(Image.open(img_path).convert("RGB"))
        assert torch.equal(y, torch.from_numpy(want_lab.astype(np.int64)))
        assert np.abs((x.permute(1, 2, 0).numpy() + 1) * 127.5 - want_img).max() < 1e-3
        assert set(y.unique().tolist()) <= set(range(num_classes(grouping))) | {255}
        assert img_path.name == lab_path.name


def test_split_uses_official_videos(tree):
    ds = CaDISDataset(tree, "test", size=None)
    assert {p.parent.parent.name for p, _ in ds.items} == {"Video02", "Video12", "Video22"}


@pytest.mark.parametrize("size", [(16, 16), (27, 48), (72, 128)])
def test_resize_rectangular(tree, size):
    x, y = CaDISDataset(tree, "val", size=size)[0]
    assert x.shape == (3, *size) and y.shape == size
    # nearest keeps ids: every id after resizing existed before
    orig = set(np.unique(np.asarray(Image.open(CaDISDataset(tree, "val", size=None).items[0][1]))).tolist())
    assert set(y.unique().tolist()) <= orig


def test_root_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*VideoNN/Images"):
        CaDISDataset(tmp_path / "nope")


def test_root_empty(tmp_path):
    with pytest.raises(FileNotFoundError, match="none of the train videos.*expected the CaDIS layout"):
        CaDISDataset(tmp_path)


def test_image_without_label(tree, tmp_path):
    root = copy_tree(tree, tmp_path / "c")
    lab = root / "Video05/Labels/Video5_frame000010.png"
    lab.unlink()
    before = snapshot(root)
    with pytest.raises(FileNotFoundError, match="Video5_frame000010.png has no label"):
        CaDISDataset(root, "val")
    assert snapshot(root) == before


def test_label_with_unknown_ids(tree, tmp_path):
    root = copy_tree(tree, tmp_path / "c")
    p = root / "Video07/Labels/Video7_frame000000.png"
    arr = np.asarray(Image.open(p)).copy()
    arr[0, :3] = [36, 40, 200]
    Image.fromarray(arr).save(p)
    before = snapshot(root)
    ds = CaDISDataset(root, "val", grouping="exp2")
    i = [k for k, (_, lp) in enumerate(ds.items) if lp == p][0]
    with pytest.raises(ValueError, match=r"Video7_frame000000.png has ids outside.*\[36, 40, 200\]"):
        ds[i]
    with pytest.raises(ValueError, match="Video7_frame000000.png"):
        ds.validate(progress=False)
    assert snapshot(root) == before


def test_label_rgb_equal_channels_accepted_unequal_refused(tree, tmp_path):
    root = copy_tree(tree, tmp_path / "c")
    p = root / "Video16/Labels/Video16_frame000000.png"
    grey = np.asarray(Image.open(p))
    Image.fromarray(np.stack([grey] * 3 + [np.full_like(grey, 255)], -1), "RGBA").save(p)
    assert np.array_equal(read_label(p), grey)
    Image.fromarray(np.stack([grey] * 3, -1), "RGB").save(p)
    assert np.array_equal(read_label(p), grey)
    rgb = np.stack([grey] * 3, -1).copy()
    rgb[5, 5, 1] = (rgb[5, 5, 1] + 1) % 36
    Image.fromarray(rgb, "RGB").save(p)
    with pytest.raises(ValueError, match="Video16_frame000000.png is RGB with channels that differ"):
        read_label(p)


@pytest.mark.parametrize("which", ["Images", "Labels"])
def test_unreadable_file(tree, tmp_path, which):
    root = copy_tree(tree, tmp_path / "c")
    p = root / f"Video05/{which}/Video5_frame000000.png"
    p.write_bytes(b"not a png at all")
    before = snapshot(root)
    ds = CaDISDataset(root, "val")
    i = [k for k, item in enumerate(ds.items) if p in item][0]
    with pytest.raises(ValueError, match=f"cannot read {which[:-1].lower()} file .*Video5_frame000000.png"):
        ds[i]
    assert snapshot(root) == before


def test_bad_split_and_grouping(tree):
    with pytest.raises(ValueError, match="split must be one of"):
        CaDISDataset(tree, "training")
    with pytest.raises(ValueError, match="unknown grouping 'exp9'"):
        CaDISDataset(tree, grouping="exp9")


def test_remap_tables_match_cadis_md():
    assert GROUPINGS["exp1"].tolist() == [0, 1, 2, 3, 4, 5, 6] + [7] * 29
    assert GROUPINGS["exp3"].tolist() == list(range(25)) + [255] * 11
    assert GROUPINGS["exp2"][18] == 13 and GROUPINGS["exp2"][25] == 255


def test_synthetic_scene_deterministic_and_varied():
    a = synthetic_scene(11, (48, 80))
    b = synthetic_scene(11, (48, 80))
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    labels = [synthetic_scene(s, (48, 80))[1] for s in range(12)]
    assert len({lab.tobytes() for lab in labels}) == 12
    # instruments appear in some scenes (ids >= 7) but not all
    with_tools = [bool((lab >= 7).any()) for lab in labels]
    assert any(with_tools)


def test_colorize():
    lab = np.array([[0, 5], [255, 35]], np.uint8)
    rgb = colorize(lab)
    assert rgb.shape == (2, 2, 3) and tuple(rgb[0, 0]) == (0, 137, 255) and tuple(rgb[1, 0]) == (0, 0, 0)
    with pytest.raises(ValueError, match="outside"):
        colorize(np.array([[40]]))


# ---------------------------------------------------------------- the CaDIS-shaped world

def test_layout_statistics_by_hand():
    lab = np.full((40, 80), 6, np.uint8)                   # cornea everywhere
    yy, xx = np.mgrid[:40, :80]
    r = np.hypot(yy - 20, xx - 40)
    lab[r < 12] = 4
    lab[r < 6] = 0                         # iris ring, pupil disc, inside the frame
    lab[30:, 70:75] = 19                                    # an instrument at the lower border
    s = layout_statistics([lab])
    assert s["class_fraction"][0] == (lab == 0).mean() and abs(s["class_fraction"].sum() - 1) < 1e-12
    assert s["pupil_radius"] == pytest.approx(np.sqrt((lab == 0).sum() / np.pi) / 40)
    assert s["pupil_cx"] == pytest.approx(40 / 80, abs=0.01) and s["pupil_cy"] == pytest.approx(0.5, abs=0.02)
    assert s["iris_at_border"] == 0 and s["instruments"] == 1
    assert s["instrument_border"] == {"lower": 1.0, "top": 0.0, "left": 0.0, "right": 0.0}
    lab[:, :30] = 4                                         # now the iris touches the left border
    assert layout_statistics([lab])["iris_at_border"] == 1
    gap = compare_layouts(layout_statistics([lab]), s)
    assert gap["class_fraction_tv"] > 0.2 and gap["iris_at_border_diff"] == 1
    with pytest.raises(ValueError, match="at least one"):
        layout_statistics([])


@pytest.fixture(scope="module")
def synthetic_layouts():
    return layout_statistics([synthetic_scene(s, (64, 112))[1] for s in range(200)])


# cadis.md, "Layout statistics of real label maps": the published numbers of the 15 real maps
CADIS_MD = dict(pupil_radius=0.27, iris_radius=0.40, iris_at_border=0.73,
                fractions={6: 0.51, 4: 0.16, 5: 0.15, 0: 0.13, 19: 0.016, 1: 0.009, 15: 0.006, 35: 0.006, 2: 0.006, 3: 0.005})


def test_synthetic_world_matches_cadis_md_numbers(synthetic_layouts):
    s = synthetic_layouts
    assert abs(s["pupil_radius"] / CADIS_MD["pupil_radius"] - 1) <= 0.15
    assert abs(s["iris_radius"] / CADIS_MD["iris_radius"] - 1) <= 0.15
    assert abs(s["iris_at_border"] - CADIS_MD["iris_at_border"]) <= 0.2
    ref = np.zeros(36)
    for k, v in CADIS_MD["fractions"].items():
        ref[k] = v
    assert 0.5 * np.abs(s["class_fraction"] - ref).sum() <= 0.12
    assert 0.5 <= s["class_presence"][35] and s["class_presence"][3] >= 0.6     # iris hooks, retractors: common


def test_synthetic_world_matches_the_real_label_maps(synthetic_layouts, real_label_dir):
    real = [read_label(p) for p in sorted(real_label_dir.glob("*.png"))]
    assert len(real) >= 15 and all(r.shape == (540, 960) for r in real)
    gap = compare_layouts(synthetic_layouts, layout_statistics(real))
    assert gap["class_fraction_tv"] <= 0.12, gap
    assert abs(gap["pupil_radius_rel"]) <= 0.15 and abs(gap["iris_radius_rel"]) <= 0.15, gap
    assert abs(gap["iris_at_border_diff"]) <= 0.2, gap


def test_synthetic_scene_any_size_is_the_same_layout():
    small, big = synthetic_scene(5, (64, 112))[1], synthetic_scene(5, (270, 480))[1]
    down = np.asarray(Image.fromarray(big).resize((112, 64), Image.NEAREST))
    assert (down == small).mean() > 0.9                     # the layout scales with the frame
    assert synthetic_scene(5, (30, 30))[1].shape == (30, 30)
