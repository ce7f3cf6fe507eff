"""Golden outputs: the demo's pixels for fixed seeds and a few training steps of every model, recorded before the
architecture refactor of issue #12, so that moving code between modules provably changes no behaviour.

    python tests/test_golden.py --write    # re-record (only when a behaviour change is intended; say so in the commit)

On the machine that recorded them the outputs are identical; other CPUs may round a few float operations differently,
so a pixel may move by one or two levels and a loss by a few parts in 10^5 (the bounds below), never more.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from surgdiff.baselines import baseline_config, run_history, train_baseline
from surgdiff.data import synthetic_scene, to_uint8
from surgdiff.samplers import sample
from surgdiff.segment import SegmenterConfig, synthetic_pairs, train_segmenter
from surgdiff.model import load_pretrained
from surgdiff.train import TrainConfig, train
from conftest import MICRO

TIMING = {"images_per_s", "steps_per_s"}  # history entries that measure the machine, not the model
GOLDEN = Path(__file__).parent / "golden"
SAMPLE_CASES = {  # every setting explicit, so that changing the model's recommended defaults does not move the goldens
    "ddim10": dict(sampler="ddim", steps=10, spacing="trailing", guidance=1.5, clip=1.0),
    "dpmpp8": dict(sampler="dpmpp_2m", steps=8, spacing="logsnr", guidance=1.5, clip=1.0),
    "ddpm6": dict(sampler="ddpm", steps=6, spacing="trailing", guidance=1.0, clip=1.0),
    "ddim5_eta": dict(sampler="ddim", steps=5, eta=0.7, spacing="trailing", guidance=2.0, clip=1.0),
}
GAN = dict(image_size=(32, 32), synthetic_scenes=4, batch_size=2, steps=4, gen_channels=8, disc_channels=8,
           disc_layers=2, spade_hidden=16, z_dim=16, spade_ups=3, resnet_blocks=1, pool_size=4, lr=1e-3,
           decay_from=1.0, log_every=1, checkpoint_every=4, num_threads=1)


def demo_samples() -> dict[str, np.ndarray]:
    "uint8 (B, H, W, 3) samples of the demo for the first two bundled label maps (at 64x112), seed 0, per case."
    model = load_pretrained("demo")
    # the first two bundled maps as they were recorded: seeds 2000000, 2000001 drawn at the demo's 64x112
    labels = torch.from_numpy(np.stack([synthetic_scene(2_000_000 + i, (64, 112))[1] for i in range(2)]).astype(np.int64))
    out = {}
    for name, kw in SAMPLE_CASES.items():
        with torch.inference_mode():
            x = sample(model, model.prepare_label(labels), generator=torch.Generator().manual_seed(0), progress=False, **kw)
        out[name] = to_uint8(x.float())
    return out


def training_losses(tmp: Path) -> dict[str, list[float]]:
    "Loss histories of a few steps of the diffusion trainer (each cond mode), of every GAN baseline and of the segmenter."
    torch.set_num_threads(1)
    out = {}
    for cond in ("concat", "spade", "both"):
        cfg = TrainConfig(model={**MICRO, "cond": cond}, image_size=(16, 24), synthetic_scenes=8, steps=5, batch_size=4,
                          lr=1e-3, warmup_steps=2, log_every=1, sample_every=0, checkpoint_every=5, num_threads=1,
                          bf16=False, out=str(tmp / f"diffusion_{cond}"))
        result = train(cfg, progress=False)
        out[f"diffusion_{cond}"] = [{k: h[k] for k in ("step", "loss", "grad_norm", "lr")} for h in result.history]
        out[f"diffusion_{cond}_ema_sum"] = float(sum(p.double().sum() for p in result.model.parameters()))  # EMA weights
    for name in ("pix2pix", "spade", "cyclegan"):
        run = train_baseline(baseline_config(name, **{**GAN, "out": str(tmp / name)}), progress=False)
        out[name] = [{k: v for k, v in h.items() if k not in TIMING} for h in run_history(run)]
    out["segmenter"] = segmenter_losses()
    return out


def segmenter_losses() -> list[float]:
    "Per-step losses of a few steps of the segmenter's trainer (augmentation on)."
    losses = []
    train_segmenter(synthetic_pairs(range(12), (32, 32)), SegmenterConfig(base_channels=8, depth=2, image_size=(32, 32)),
                    steps=6, batch_size=4, lr=5e-3, seed=0, losses=losses, num_threads=1, progress=False)
    return losses


def write(tmp: Path) -> None:
    GOLDEN.mkdir(exist_ok=True)
    np.savez_compressed(GOLDEN / "demo_samples.npz", **demo_samples())
    (GOLDEN / "training_losses.json").write_text(json.dumps(training_losses(tmp), indent=1) + "\n")


@pytest.mark.slow
def test_demo_samples_match_the_golden_pixels():
    with np.load(GOLDEN / "demo_samples.npz", allow_pickle=False) as f:
        golden = {k: f[k] for k in f.files}
    now = demo_samples()
    assert set(now) == set(golden)
    for name, img in now.items():
        diff = np.abs(img.astype(int) - golden[name].astype(int))
        assert img.shape == golden[name].shape, name
        assert diff.max() <= 2 and (diff > 0).mean() <= 0.002, (name, int(diff.max()), float((diff > 0).mean()))


def _close(a, b, path=""):
    if isinstance(a, dict):
        assert set(a) == set(b), (path, sorted(a), sorted(b))
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), (path, len(a), len(b))
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert b == pytest.approx(a, rel=5e-5, abs=1e-6), (path, a, b)
    else:
        assert a == b, (path, a, b)


@pytest.mark.slow
def test_training_losses_match_the_golden_histories(tmp_path):
    golden = json.loads((GOLDEN / "training_losses.json").read_text())
    _close(golden, json.loads(json.dumps(training_losses(tmp_path))))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--write", action="store_true", help="record the goldens from the current code")
    if p.parse_args().write:
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            write(Path(d))
        print(f"wrote {GOLDEN}", file=sys.stderr)
