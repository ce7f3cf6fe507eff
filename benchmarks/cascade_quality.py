"""The super-resolution cascade, measured: is the 256×448 image as faithful to its label map as the 64×112 one, and
does the stage add the fine detail that bicubic enlargement lacks?

    python benchmarks/cascade_quality.py [--n 64] [--real DIR] [--stage-steps S] [--aug A] [--out benchmarks/tables/cascade]

For n held-out synthetic label maps (seeds 1000000 + k, drawn at 256×448) and, with --real, every CaDIS label PNG in
DIR (e.g. the workspace's shared/reference/cadis_real_labels, resized to 256×448 with nearest neighbour), four rows:
- base: the demo's 64×112 sample, at its recommended settings;
- bicubic ×4: that sample enlarged to 256×448 by bicubic interpolation;
- cascade: `load_cascade()`'s 256×448 image (demo-sr at its recommended settings, or --stage-steps / --aug);
- drawn: the same label maps drawn by the renderer at 256×448 in other styles (the floor of KID; synthetic only).
Label mIoU: the shipped 64×112 segmenter on each image shrunk to 64×112 (box filter). KID/FID: against the maps drawn
at 256×448 in their own style. Fine-scale power: the radially averaged power spectrum's energy in the top octave
(spatial frequencies from half of Nyquist to Nyquist; a 64×112 image holds nothing above a quarter, and bicubic's
imperfect stop band leaks most between a quarter and a half), relative to the drawn row.
Seconds per image per stage are wall times on this machine (torch's threads, batches of --batch). Synthetic data
only, except the real-map mIoU.
"""
import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from surgdiff.bench import HELDOUT_SEED_OFFSET, write_report
from surgdiff.cascade import downsample, load_cascade, resize_labels, upsample
from surgdiff.data import colorize, from_uint8, read_label, synthetic_scene, to_uint8
from surgdiff.metrics import default_extractor, fid_from_features, kid_from_features
from surgdiff.samplers import sample
from surgdiff.segment import label_consistency

SIZE, LOW = (256, 448), (64, 112)


def radial_power(images: np.ndarray) -> np.ndarray:
    "Radially averaged power spectrum of the luminance of uint8 images (N,H,W,3), averaged over images; bins of 1/64 Nyquist."
    y = images.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255
    y -= y.mean(axis=(1, 2), keepdims=True)
    power = (np.abs(np.fft.fft2(y)) ** 2).mean(0)
    fy, fx = np.fft.fftfreq(y.shape[1]) * 2, np.fft.fftfreq(y.shape[2]) * 2   # in units of Nyquist
    r = np.hypot(fy[:, None], fx[None, :])
    bins = np.minimum((r * 64).astype(int), 64)
    return np.bincount(bins.ravel(), power.ravel(), 65)[:64] / np.maximum(np.bincount(bins.ravel(), minlength=65)[:64], 1)


def fine_power(spectrum: np.ndarray) -> float:
    "Power in the top octave (half of Nyquist to Nyquist at 256×448), where bicubic enlargement of 64×112 has least."
    return float(spectrum[32:].sum())


def run_cascade(cascade, labels: np.ndarray, seed: int, batch: int, stage_steps, aug) -> tuple[np.ndarray, np.ndarray, dict]:
    "Base and cascade outputs (uint8) for 256×448 label maps, with the seconds each stage took."
    lab = cascade.prepare_label(torch.from_numpy(labels.astype(np.int64)))
    g, base, final, secs = torch.Generator().manual_seed(seed), [], [], {"base": 0.0, "stage": 0.0}
    for i in range(0, len(lab), batch):
        with torch.inference_mode():
            t = time.perf_counter()
            x = sample(cascade.base, resize_labels(lab[i:i + batch], LOW), generator=g, progress=False)
            secs["base"] += time.perf_counter() - t
            t = time.perf_counter()
            y = cascade.lift(0, x, lab[i:i + batch], g, stage_steps, aug, progress=False)
            secs["stage"] += time.perf_counter() - t
        base.append(to_uint8(x.float(), check_range=False))
        final.append(to_uint8(y.float(), check_range=False))
    return np.concatenate(base), np.concatenate(final), {k: v / len(lab) for k, v in secs.items()}


def shrink(images: np.ndarray) -> np.ndarray:
    return to_uint8(downsample(from_uint8(images), LOW))


def enlarge(images: np.ndarray) -> np.ndarray:
    return to_uint8(upsample(from_uint8(images), SIZE).clamp(-1, 1))


def figure(labels, base, bic, final, drawn, spectra):
    import matplotlib.pyplot as plt
    k = min(3, len(labels))
    fig, axs = plt.subplots(k + 1, 4, figsize=(16, 2.6 * k + 3.4), dpi=100)
    for r in range(k):
        for ax, im, title in zip(axs[r], [colorize(labels[r]), bic[r], final[r], drawn[r]],
                                 ["label map", "base 64×112, bicubic ×4", "cascade 256×448", "drawn at 256×448 (other style)"]):
            ax.imshow(im, interpolation="nearest")
            ax.axis("off")
            if r == 0:
                ax.set_title(title)
    for ax in axs[k]:
        ax.remove()
    ax = fig.add_subplot(k + 1, 1, k + 1)
    f = (np.arange(64) + 0.5) / 64
    for name, sp in spectra.items():
        ax.loglog(f, sp, label=name)
    ax.axvline(0.25, color="grey", ls=":", lw=1)
    ax.text(0.26, ax.get_ylim()[1] * 0.3, "Nyquist of 64×112", color="grey")
    ax.axvspan(0.5, 1.0, color="grey", alpha=0.1)
    ax.text(0.52, ax.get_ylim()[0] * 3, "top octave", color="grey")
    ax.set(xlabel="spatial frequency (fraction of Nyquist at 256×448)", ylabel="power", title="radially averaged power spectrum")
    ax.legend()
    fig.tight_layout()
    return fig


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=64, help="held-out synthetic label maps (default: %(default)s)")
    p.add_argument("--real", type=Path, help="a folder of real CaDIS label PNGs to score too")
    p.add_argument("--stage-steps", type=int, help="the stage's sampling steps (default: its recommendation)")
    p.add_argument("--aug", type=float, help="the stage's aug_alpha_bar (default: its recommendation)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("benchmarks/tables/cascade"))
    a = p.parse_args()
    cascade = load_cascade()
    seeds = range(HELDOUT_SEED_OFFSET, HELDOUT_SEED_OFFSET + a.n)
    pairs = [synthetic_scene(s, SIZE) for s in seeds]
    truth, labels = np.stack([q[0] for q in pairs]), np.stack([q[1] for q in pairs])
    drawn = np.stack([synthetic_scene(s, SIZE, style_seed=s + 7_000_000)[0] for s in seeds])
    base, final, secs = run_cascade(cascade, labels, a.seed, a.batch, a.stage_steps, a.aug)
    bic = enlarge(base)
    low_labels = resize_labels(torch.from_numpy(labels.astype(np.int64)), LOW).numpy()
    ext = default_extractor()
    f_truth = ext.extract(truth, progress=False)
    spectra = {"drawn (other style)": radial_power(drawn), "cascade": radial_power(final), "bicubic ×4": radial_power(bic)}
    rows = []
    for name, imgs, at_low in [("base 64×112", base, base), ("bicubic ×4", bic, shrink(bic)), ("cascade 256×448", final, shrink(final)),
                               ("drawn 256×448", drawn, shrink(drawn))]:
        row = {"output": name, "n": a.n, "miou": label_consistency(at_low, low_labels)["miou"]}
        if imgs.shape[1:3] == SIZE:
            f = ext.extract(imgs, progress=False)
            row.update(kid=kid_from_features(f_truth, f, subset_size=min(1000, a.n))["kid"], fid=fid_from_features(f_truth, f))
        key = {"bicubic ×4": "bicubic ×4", "cascade 256×448": "cascade", "drawn 256×448": "drawn (other style)"}.get(name)
        if key:
            row["fine_power"] = fine_power(spectra[key]) / fine_power(spectra["drawn (other style)"])
        rows.append(row)
    rows[0]["seconds_per_image"], rows[2]["seconds_per_image"] = secs["base"], secs["base"] + secs["stage"]
    meta = {"command": "python benchmarks/cascade_quality.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(a).items() if v is not None and k != "out"),
            "stage": {"sampling": cascade.stages[0].sampling, "aug_alpha_bar": a.aug or cascade.stages[0].config.aug_alpha_bar,
                      "stage_steps": a.stage_steps},
            "seconds_per_image_by_stage": secs, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "data": f"synthetic held-out scenes (seeds {seeds[0]}…{seeds[-1]}) drawn at 256×448; KID/FID against them, "
                    "the drawn row in other styles (style seed + 7000000)",
            "spectra": {k: v.tolist() for k, v in spectra.items()}}
    if a.real:
        files = sorted(a.real.glob("*.png"))
        real = np.stack([np.asarray(Image.fromarray(read_label(f)).resize(SIZE[::-1], Image.NEAREST)) for f in files])
        rbase, rfinal, _ = run_cascade(cascade, real, a.seed, a.batch, a.stage_steps, a.aug)
        rlow = resize_labels(torch.from_numpy(real.astype(np.int64)), LOW).numpy()
        rows[0]["real_miou"] = label_consistency(rbase, rlow)["miou"]
        rows[1]["real_miou"] = label_consistency(shrink(enlarge(rbase)), rlow)["miou"]
        rows[2]["real_miou"] = label_consistency(shrink(rfinal), rlow)["miou"]
        meta["real"] = f"{len(files)} real CaDIS label maps from {a.real} (resized nearest to 256×448; no real images)"
        a.out.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.concatenate([np.concatenate([colorize(l), im], 1) for l, im in zip(real[:6], rfinal[:6])], 0)).save(a.out / "real_maps.png")
    fig = figure(labels, base, bic, final, drawn, spectra)
    out = write_report(a.out, rows, "output", "output", "The super-resolution cascade: 64×112 → 256×448", meta, fig)
    fig.savefig(out / "figure.png", dpi=100)
    print((out / "results.md").read_text().split("\n- **")[0])
    print(f"seconds per image: base {secs['base']:.2f}, stage {secs['stage']:.2f} ({torch.get_num_threads()} threads); wrote {out}")


if __name__ == "__main__":
    main()
