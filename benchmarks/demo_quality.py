"""Does a diffusion model follow its label maps? Label consistency of its samples against the segmenter's ceiling.

For each sampler setting, samples one image per held-out synthetic label map (seeds HELDOUT_SEED_OFFSET + k, never
seen in training) and measures the shipped segmenter's mIoU / pixel accuracy of those images against the maps
they were generated from. The ceiling is the same segmenter on the real synthetic images of those maps.

    python benchmarks/demo_quality.py [--model demo] [--n 64] [--settings 40:1.5 10:1.5 20:1.5 40:1.0 40:2.0 40:3.0]

A setting is STEPS:GUIDANCE (DDIM, η=0, trailing spacing, seed 0). Writes a Markdown table to stdout and,
with --out, a JSON file and a contact sheet per setting.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from surgdiff.data import contact_sheet
from surgdiff.samplers import sample
from surgdiff.segment import heldout_pairs, label_consistency, load_segmenter
from surgdiff.train import load_pretrained


def generate(model, labels: np.ndarray, steps: int, guidance: float, seed: int, batch: int, clip: float | None) -> np.ndarray:
    lab = model.prepare_label(torch.from_numpy(labels.astype(np.int64)))
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, len(lab), batch):
        with torch.inference_mode():
            x = sample(model, lab[i:i + batch], sampler="ddim", steps=steps, guidance=guidance, generator=g, clip=clip, progress=False)
        out.append(((x.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="demo")
    p.add_argument("--n", type=int, default=64, help="held-out label maps")
    p.add_argument("--settings", nargs="+", default=["40:1.5", "10:1.5", "20:1.5", "40:1.0", "40:2.0", "40:3.0"])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clip", type=float, default=1.0, help="clamp x̂0 to [-clip, clip] at each step; 0 = off")
    p.add_argument("--out", type=Path, help="folder for results.json and contact sheets")
    a = p.parse_args()
    model = load_pretrained(a.model)
    seg = load_segmenter()
    imgs, labs = heldout_pairs(a.n, tuple(model.config.image_size))
    ceiling = label_consistency(imgs, labs, seg)
    rows = [("real images (ceiling)", "-", "-", ceiling["miou"], ceiling["pixel_accuracy"], 1.0, 0.0)]
    results = {"model": a.model, "n": a.n, "ceiling": {k: ceiling[k] for k in ("miou", "pixel_accuracy", "per_class_iou")},
               "settings": []}
    if a.out: a.out.mkdir(parents=True, exist_ok=True)
    for setting in a.settings:
        steps, guidance = int(setting.split(":")[0]), float(setting.split(":")[1])
        t = time.perf_counter()
        gen = generate(model, labs, steps, guidance, a.seed, a.batch, a.clip or None)
        secs = (time.perf_counter() - t) / a.n
        lc = label_consistency(gen, labs, seg)
        rows.append((f"DDIM {steps} steps", steps, guidance, lc["miou"], lc["pixel_accuracy"], lc["miou"] / ceiling["miou"], secs))
        results["settings"].append({"steps": steps, "guidance": guidance, "miou": lc["miou"],
                                    "pixel_accuracy": lc["pixel_accuracy"], "per_class_iou": lc["per_class_iou"],
                                    "fraction_of_ceiling": lc["miou"] / ceiling["miou"], "seconds_per_image": secs})
        if a.out:
            Image.fromarray(contact_sheet(list(gen[:16]), list(labs[:16]), ncols=8)).save(a.out / f"ddim{steps}_g{guidance}.png")
        print(f"done {setting}: mIoU {lc['miou']:.3f}", flush=True)
    print(f"\nLabel consistency on {a.n} held-out synthetic label maps (segmenter grouping {seg.config.grouping}, "
          f"{seg.config.num_classes} classes), model {a.model!r}, x̂0 clip {a.clip or 'off'}, torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| samples | steps | guidance | mIoU | pixel acc. | of ceiling mIoU | s/image |")
    print("|---|---|---|---|---|---|---|")
    for name, steps, g, miou, acc, frac, secs in rows:
        print(f"| {name} | {steps} | {g} | {miou:.3f} | {acc:.3f} | {frac:.0%} | {secs:.2f} |")
    if a.out: (a.out / "results.json").write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
