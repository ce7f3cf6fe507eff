"""Does a diffusion model follow its label maps? Label consistency of its samples, on synthetic and real maps.

For each sampling setting, samples one image per held-out synthetic label map (seeds HELDOUT_SEED_OFFSET + k, never
seen in training) and measures the shipped segmenter's mIoU / pixel accuracy of those images against the maps they
were generated from. The ceiling is the same segmenter on the real synthetic images of those maps. With --real DIR,
it does the same for every CaDIS label PNG in DIR (e.g. the 15 real maps in the workspace's
shared/reference/cadis_real_labels/), resized to the model's size with nearest neighbour; real maps have no image
here, so they have no ceiling.

    python benchmarks/demo_quality.py [--model demo] [--n 64] [--real DIR] [--settings default 40:1.5 10:1.5 ...]

A setting is `default` (the model's recommended settings, as `surgdiff sample` uses them) or [SAMPLER:]STEPS:GUIDANCE
(η=0, trailing spacing, seed 0, x̂0 clip --clip). Writes a Markdown table to stdout and, with --out, results.json and
a contact sheet per setting.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from surgdiff.cascade import generate_images
from surgdiff.data import contact_sheet, read_label
from surgdiff.samplers import sampling_settings
from surgdiff.segment import heldout_pairs, label_consistency, load_segmenter
from surgdiff.model import load_pretrained


def generate(model, labels: np.ndarray, settings: dict, seed: int, batch: int) -> np.ndarray:
    "uint8 images by the protocol's quantisation (`generate_images`)."
    return generate_images(model, labels, seed=seed, batch_size=batch, **settings)


def parse_setting(text: str, clip: float | None) -> dict:
    if text == "default":
        return {}
    parts = text.split(":")
    sampler = parts.pop(0) if len(parts) == 3 else "ddim"
    return dict(sampler=sampler, steps=int(parts[0]), guidance=float(parts[1]), clip=clip)


def real_maps(folder: Path, size: tuple[int, int]) -> tuple[list[str], np.ndarray]:
    files = sorted(folder.glob("*.png"))
    if not files:
        raise SystemExit(f"--real {folder}: no PNG label maps")
    labs = [np.asarray(Image.fromarray(read_label(f)).resize((size[1], size[0]), Image.NEAREST)) for f in files]
    return [f.name for f in files], np.stack(labs)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="demo")
    p.add_argument("--n", type=int, default=64, help="held-out synthetic label maps")
    p.add_argument("--real", type=Path, help="a folder of real CaDIS label PNGs to score too")
    p.add_argument("--settings", nargs="+", default=["default", "40:1.0", "10:1.5", "20:1.5", "40:1.5", "40:3.0"])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clip", type=float, default=1.0, help="clamp x̂0 to [-clip, clip] at each step; 0 = off")
    p.add_argument("--out", type=Path, help="folder for results.json and contact sheets")
    a = p.parse_args()
    model = load_pretrained(a.model)
    size = tuple(model.config.image_size)
    seg = load_segmenter()
    imgs, labs = heldout_pairs(a.n, size)
    ceiling = label_consistency(imgs, labs, seg)
    real_names, real_labs = real_maps(a.real, size) if a.real else ([], None)
    results = {"model": a.model, "n": a.n, "size": list(size), "real": str(a.real) if a.real else None,
               "real_files": real_names, "threads": torch.get_num_threads(), "torch": torch.__version__,
               "ceiling": {k: ceiling[k] for k in ("miou", "pixel_accuracy", "per_class_iou")}, "settings": []}
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
    for text in a.settings:
        st = sampling_settings(model, **parse_setting(text, a.clip))
        t = time.perf_counter()
        gen = generate(model, labs, parse_setting(text, a.clip), a.seed, a.batch)
        secs = (time.perf_counter() - t) / a.n
        lc = label_consistency(gen, labs, seg)
        row = {"setting": text, **st, "miou": lc["miou"], "pixel_accuracy": lc["pixel_accuracy"],
               "per_class_iou": lc["per_class_iou"], "fraction_of_ceiling": lc["miou"] / ceiling["miou"],
               "seconds_per_image": secs}
        if real_labs is not None:
            rgen = generate(model, real_labs, parse_setting(text, a.clip), a.seed, a.batch)
            rl = label_consistency(rgen, real_labs, seg)
            row.update(real_miou=rl["miou"], real_pixel_accuracy=rl["pixel_accuracy"], real_per_class_iou=rl["per_class_iou"])
            if a.out:
                Image.fromarray(contact_sheet(list(rgen), list(real_labs), ncols=5)).save(a.out / f"real_{text.replace(':', '_')}.png")
        results["settings"].append(row)
        if a.out:
            Image.fromarray(contact_sheet(list(gen[:16]), list(labs[:16]), ncols=8)).save(a.out / f"{text.replace(':', '_')}.png")
        print(f"done {text}: mIoU {lc['miou']:.3f}" + (f", real maps {row['real_miou']:.3f}" if real_labs is not None else ""),
              flush=True)
    print(f"\nLabel consistency on {a.n} held-out synthetic label maps" + (f" and {len(real_names)} real maps from {a.real}" if a.real else "")
          + f" (segmenter grouping {seg.config.grouping}), model {a.model!r} at {size[0]}×{size[1]}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads\n")
    print("| samples | sampler | steps | guidance | clip | synthetic mIoU | of ceiling | real-map mIoU | s/image |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| real images (ceiling) | – | – | – | – | {ceiling['miou']:.3f} | 100 % | – | – |")
    for r in results["settings"]:
        real = f"{r['real_miou']:.3f}" if "real_miou" in r else "–"
        print(f"| {r['setting']} | {r['sampler']} | {r['steps']} | {r['guidance']} | {r['clip']} | {r['miou']:.3f} | "
              f"{r['fraction_of_ceiling']:.0%} | {real} | {r['seconds_per_image']:.2f} |")
    if a.out:
        (a.out / "results.json").write_text(json.dumps(results, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
