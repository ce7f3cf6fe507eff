"""Tests of surgdiff.segment: the label-consistency metric, the segmenter, and the shipped weights."""
import math
import shutil

import numpy as np
import pytest
import torch

from surgdiff.data import remap
from surgdiff.segment import (HELDOUT_SEED_OFFSET, TRAIN_SEEDS, Segmenter, SegmenterConfig, as_image_tensor,
                              as_label_tensor, augment_pairs, classic_augment, confusion_matrix, gaussian_blur, heldout_pairs,
                              label_consistency, load_segmenter,
                              save_segmenter, scores_from_confusion, segmenter_ceiling, shipped_segmenter_dir,
                              synthetic_pairs, train_segmenter)
from surgdiff.io import CheckpointError, load_json, save_json


@pytest.fixture(scope="module")
def seg():
    return load_segmenter("synthetic64")


@pytest.fixture(scope="module")
def heldout():
    return heldout_pairs(64)


# ---------------------------------------------------------------- the metric, by hand

def test_perfect_prediction_scores_one():
    y = torch.randint(0, 5, (3, 16, 16), generator=torch.Generator().manual_seed(0))
    s = scores_from_confusion(confusion_matrix(y, y, 5))
    assert s["miou"] == 1.0 and s["pixel_accuracy"] == 1.0 and s["n_pixels"] == 3 * 16 * 16


def test_known_confusion_matrix_hand_computed():
    conf = np.array([[5, 1, 0],
                     [2, 3, 1],
                     [0, 4, 4]])
    s = scores_from_confusion(conf, ["a", "b", "c"])
    # IoU_k = C_kk / (row_k + col_k - C_kk)
    iou = {"a": 5 / (6 + 7 - 5), "b": 3 / (6 + 8 - 3), "c": 4 / (8 + 5 - 4)}
    for k, v in iou.items():
        assert math.isclose(s["per_class_iou"][k], v)
    assert math.isclose(s["miou"], sum(iou.values()) / 3)
    assert math.isclose(s["pixel_accuracy"], 12 / 20)


def test_absent_class_is_nan_and_left_out_of_the_mean():
    conf = np.array([[4, 0, 0], [0, 0, 0], [1, 0, 3]])
    s = scores_from_confusion(conf)
    assert math.isnan(s["per_class_iou"]["1"])
    assert math.isclose(s["miou"], (4 / 5 + 3 / 4) / 2)


def test_ignore_pixels_are_excluded():
    target = torch.tensor([[0, 1, 255, 255]])
    good = torch.tensor([[0, 1, 0, 0]])       # wrong only where the label is "ignore"
    assert torch.equal(confusion_matrix(good, target, 2), torch.tensor([[1, 0], [0, 1]]))
    assert scores_from_confusion(confusion_matrix(good, target, 2))["miou"] == 1.0
    # same through label_consistency: ignore pixels do not count, whatever the image shows there
    imgs, labs = heldout_pairs(2)
    masked = labs.copy()
    masked[:, :32] = 255
    r = label_consistency(imgs, masked)
    assert r["n_pixels"] == 2 * 32 * 112


def test_confusion_matrix_rejects_bad_ids():
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 7]), 3)


# ---------------------------------------------------------------- config and inputs

def test_config_json_round_trip_and_validation():
    for cfg in [SegmenterConfig(), SegmenterConfig(num_classes=17, grouping="exp2", base_channels=8, depth=2,
                                                   image_size=(48, 96))]:
        back = SegmenterConfig.from_json(cfg.to_json())
        assert back == cfg and back.image_size == cfg.image_size
    with pytest.raises(ValueError, match="num_classes"):
        SegmenterConfig(num_classes=8, grouping="exp2")
    with pytest.raises(ValueError, match="grouping"):
        SegmenterConfig(grouping="exp9")
    with pytest.raises(ValueError, match="unknown"):
        SegmenterConfig.from_dict({**SegmenterConfig().to_dict(), "colour": 1})


def test_input_formats_and_errors(seg, heldout):
    imgs, labs = heldout
    x = as_image_tensor(imgs)
    assert x.shape == (64, 3, 64, 112) and x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
    assert torch.equal(as_label_tensor(labs, "exp1"), torch.as_tensor(remap(labs, "exp1")).long())
    a = label_consistency(imgs[:8], labs[:8], seg)
    b = label_consistency(x[:8], torch.as_tensor(labs[:8]), seg)
    assert a["miou"] == b["miou"] and np.array_equal(a["confusion"], b["confusion"])
    grouped = label_consistency(x[:8], remap(labs[:8], "exp1"), seg, labels_grouped=True)
    assert np.array_equal(grouped["confusion"], a["confusion"])
    with pytest.raises(ValueError, match="images"):
        label_consistency(imgs[0], labs[0], seg)
    with pytest.raises(ValueError, match="same count"):
        label_consistency(imgs[:4], labs[:3], seg)
    with pytest.raises(ValueError, match="ids outside"):
        label_consistency(imgs[:1], np.full((1, 64, 64), 40, np.uint8), seg)
    with pytest.raises(ValueError, match=r"\[-1,1\]"):
        label_consistency(x[:1] * 127.5 + 127.5, labs[:1], seg)
    with pytest.raises(ValueError, match="grouping"):
        label_consistency(imgs[:1], labs[:1], seg, grouping="exp2")


# ---------------------------------------------------------------- the shipped segmenter

def test_shipped_segmenter_beats_majority_class(seg, heldout):
    imgs, labs = heldout
    assert seg.config == SegmenterConfig() and not seg.training
    r = label_consistency(imgs, labs, seg)
    y = as_label_tensor(labs, "exp1")
    majority = int(torch.bincount(y[y != 255]).argmax())
    trivial = scores_from_confusion(confusion_matrix(torch.full_like(y, majority), y, 8))
    assert r["n_images"] == 64 and r["resized_from"] is None
    assert r["miou"] > trivial["miou"] + 0.5, (r["miou"], trivial["miou"])
    assert r["pixel_accuracy"] > trivial["pixel_accuracy"] + 0.3
    for name in ["Pupil", "Iris", "Skin", "Cornea"]:   # the big anatomy is nearly perfect
        assert r["per_class_iou"][name] > 0.9, (name, r["per_class_iou"][name])
    # the ceiling recorded next to the weights is what the weights measure now
    recorded = load_json(shipped_segmenter_dir() / "training.json")["ceiling"]
    assert math.isclose(recorded["miou"], segmenter_ceiling(seg, 64)["miou"], abs_tol=1e-6)
    assert recorded["miou"] == pytest.approx(r["miou"], abs=1e-9)


def test_wrong_label_maps_score_much_lower(seg, heldout):
    imgs, labs = heldout
    right = label_consistency(imgs, labs, seg)
    perm = np.roll(np.arange(64), 7)
    wrong = label_consistency(imgs, labs[perm], seg)
    assert wrong["miou"] < 0.6 * right["miou"], (wrong["miou"], right["miou"])
    assert wrong["pixel_accuracy"] < right["pixel_accuracy"] - 0.15


def test_other_sizes_are_resized(seg, heldout):
    imgs, labs = heldout
    x = torch.nn.functional.interpolate(as_image_tensor(imgs[:16]), size=(96, 128), mode="bilinear")
    y = torch.nn.functional.interpolate(torch.as_tensor(labs[:16])[:, None].float(), size=(96, 128),
                                        mode="nearest-exact")[:, 0]
    r = label_consistency(x, y.long(), seg)
    ref = label_consistency(imgs[:16], labs[:16], seg)
    assert r["resized_from"] == [96, 128] and r["evaluated_at"] == [64, 112]
    assert abs(r["miou"] - ref["miou"]) < 0.03   # a half-pixel misalignment of the labels would cost ~0.13


def test_shipped_files_are_small_and_seeds_disjoint():
    folder = shipped_segmenter_dir()
    assert (folder / "model.safetensors").stat().st_size < 2 * 2**20
    rec = load_json(folder / "training.json")
    assert rec["train_seeds"] == [0, TRAIN_SEEDS - 1] and TRAIN_SEEDS <= HELDOUT_SEED_OFFSET


# ---------------------------------------------------------------- checkpoints

def test_save_load_round_trip(tmp_path):
    model = Segmenter(SegmenterConfig(num_classes=36, grouping=None, base_channels=4, depth=2, image_size=(16, 16)))
    save_segmenter(tmp_path / "s", model)
    back = load_segmenter(tmp_path / "s")
    assert back.config == model.config
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v)


def test_corrupted_checkpoints_raise_checkpoint_error(tmp_path):
    src = shipped_segmenter_dir()

    def copy(name):
        return shutil.copytree(src, tmp_path / name)

    d = copy("truncated")
    w = d / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(CheckpointError):
        load_segmenter(d)
    d = copy("garbage")
    w = d / "model.safetensors"
    raw = bytearray(w.read_bytes())
    raw[:8] = b"\xff" * 8
    w.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError):
        load_segmenter(d)
    d = copy("bad_json")
    (d / "config.json").write_text('{"kind": "segm')
    with pytest.raises(CheckpointError):
        load_segmenter(d)
    d = copy("other_kind")
    save_json(d / "config.json", {**load_json(d / "config.json"), "kind": "unet"})
    with pytest.raises(CheckpointError, match="segmenter"):
        load_segmenter(d)
    d = copy("mismatch")
    save_json(d / "config.json", {**load_json(d / "config.json"), "base_channels": 8})
    with pytest.raises(CheckpointError, match="match"):
        load_segmenter(d)
    d = copy("wrong_classes")
    save_json(d / "config.json", {**load_json(d / "config.json"), "num_classes": 17})
    with pytest.raises(CheckpointError, match="num_classes"):
        load_segmenter(d)
    with pytest.raises(CheckpointError):
        load_segmenter(tmp_path / "does_not_exist")


# ---------------------------------------------------------------- training

TINY = SegmenterConfig(base_channels=8, depth=2, image_size=(32, 32))


@pytest.fixture(scope="module")
def tiny_data():
    return synthetic_pairs(range(48), (32, 32))


def test_short_training_lowers_loss(tiny_data):
    losses = []
    train_segmenter(tiny_data, TINY, steps=40, batch_size=8, lr=5e-3, seed=0, losses=losses, num_threads=1, progress=False)
    assert len(losses) == 40 and all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5]), (losses[:5], losses[-5:])


def test_training_is_deterministic_under_a_seed(tiny_data):
    def run(seed):
        return train_segmenter(tiny_data, TINY, steps=8, batch_size=4, seed=seed, num_threads=1, progress=False).state_dict()
    threads = torch.get_num_threads()
    a, b, c = run(1), run(1), run(2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert torch.get_num_threads() == threads          # `num_threads=1` is restored afterwards


def test_training_resizes_and_accepts_a_dataset(tmp_path):
    from surgdiff.data import CaDISDataset, write_synthetic_cadis
    root = write_synthetic_cadis(tmp_path / "cadis", videos=[1, 3], frames_per_video=2, size=(40, 40))
    cfg = SegmenterConfig(base_channels=4, depth=2, image_size=(16, 16))
    for grouping in (None, "exp1"):   # CaDIS ids are regrouped; already-grouped labels are used as they are
        ds = CaDISDataset(root, "train", grouping=grouping, size=None)
        model = train_segmenter(ds, cfg, steps=2, batch_size=2, num_threads=1, progress=False)
        assert model(torch.zeros(1, 3, 16, 16)).shape == (1, 8, 16, 16)
    with pytest.raises(ValueError, match="grouping"):
        train_segmenter(CaDISDataset(root, "train", grouping="exp2", size=None), cfg, steps=1, progress=False)


def test_augmentation_keeps_pairs_aligned():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 16, 16) * 2 - 1
    for sigma in (0.7, 1.2):   # one sigma per image equals blurring each image alone
        per_image = gaussian_blur(x, torch.tensor([0.0, sigma] * 3))
        assert torch.equal(per_image[0], x[0])
        assert torch.allclose(per_image[1:2], gaussian_blur(x[1:2], sigma), atol=1e-6)
    assert torch.allclose(gaussian_blur(torch.ones(1, 3, 8, 8), 1.0), torch.ones(1, 3, 8, 8), atol=1e-6)
    # a label map painted into the image stays aligned with the label after augmentation
    y = torch.randint(0, 2, (32, 4, 4), generator=g).repeat_interleave(4, 1).repeat_interleave(4, 2)  # 4x4 blocks
    img = (y[:, None].float() * 2 - 1).repeat(1, 3, 1, 1)
    xa, ya = augment_pairs(img, y, g)
    assert ((xa.mean(1) > 0).long() == ya).float().mean() > 0.9
    assert not torch.equal(ya, y)   # some flips happened


def test_classic_augment_keeps_pairs_aligned_and_only_recolours():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (32, 4, 4), generator=g).repeat_interleave(4, 1).repeat_interleave(4, 2)  # 4x4 blocks
    img = (y[:, None].float() * 1.2 - 0.6).repeat(1, 3, 1, 1)                   # class 1 bright, class 0 dark
    xa, ya = classic_augment(img, y, g)
    assert xa.shape == img.shape and xa.min() >= -1 and xa.max() <= 1
    assert torch.equal((xa.mean(1) > xa.mean((1, 2, 3))[:, None, None]).long(), ya)  # colour jitter keeps the order
    assert not torch.equal(ya, y)                                                  # some flips happened
    colours = {tuple(v.tolist()) for v in xa[:, :, 0, 0].round(decimals=3)}
    assert len(colours) > 4                                                        # images got different colours


def test_train_segmenter_takes_an_augmentation_function():
    x, y = synthetic_pairs(range(4), (16, 16))
    calls = []
    def spy(xb, yb, rng):
        calls.append(len(xb))
        return xb, yb
    train_segmenter((x, y), SegmenterConfig(base_channels=4, depth=2, image_size=(16, 16)), steps=3, batch_size=2,
                    augment=spy, num_threads=1, progress=False)
    assert calls == [2, 2, 2]

