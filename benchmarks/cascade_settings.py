"""Which sampling settings should the super-resolution stage recommend? A small sweep on the demo's own samples.

    python benchmarks/cascade_settings.py [--stage demo-sr] [--n 32] [--settings ddim:trailing:4:1.0 ...]

The demo samples n held-out synthetic label maps once (its recommended settings, seed 0); the stage lifts those same
64×112 images with each setting SAMPLER:SPACING:STEPS:AUG (aug = the input's noise level ᾱ_aug, 1 = clean). Scores:
label mIoU of the lifted images shrunk to 64×112 (the shipped segmenter), KID against the maps drawn at 256×448,
fine-scale power relative to those drawings (`cascade_quality.fine_power`: the top octave; 1 = as much fine detail
as the renderer draws; the recorded table was measured when this band started at a quarter of Nyquist, see its notes), PSNR between the lifted image shrunk back and the base
sample (how faithful the stage is to its input), seconds per image. Synthetic data only; n is small, so KID is rough.
"""
import argparse
import time

import numpy as np
import torch

from cascade_quality import SIZE, LOW, fine_power, radial_power, shrink
from surgdiff.bench import HELDOUT_SEED_OFFSET, write_report
from surgdiff.cascade import load_cascade, resize_labels
from surgdiff.data import from_uint8, synthetic_scene, to_uint8
from surgdiff.metrics import default_extractor, kid_from_features
from surgdiff.samplers import sample
from surgdiff.segment import label_consistency

DEFAULT = ["ddim:trailing:2:1.0", "ddim:trailing:4:1.0", "ddim:trailing:8:1.0", "ddim:logsnr:4:1.0", "dpmpp_2m:logsnr:4:1.0",
           "dpmpp_2m:logsnr:8:1.0", "ddim:trailing:4:0.8", "ddim:trailing:4:0.6"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", default="demo-sr")
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--settings", nargs="+", default=DEFAULT)
    p.add_argument("--out", default="benchmarks/tables/cascade_settings")
    a = p.parse_args()
    cascade = load_cascade(stages=(a.stage,))
    seeds = range(HELDOUT_SEED_OFFSET, HELDOUT_SEED_OFFSET + a.n)
    pairs = [synthetic_scene(s, SIZE) for s in seeds]
    truth, labels = np.stack([q[0] for q in pairs]), torch.from_numpy(np.stack([q[1] for q in pairs]).astype(np.int64))
    low_labels = resize_labels(labels, LOW).numpy()
    with torch.inference_mode():
        base = sample(cascade.base, resize_labels(labels, LOW), generator=torch.Generator().manual_seed(0), progress=False)
    ext = default_extractor()
    f_truth = ext.extract(truth, progress=False)
    drawn_power = fine_power(radial_power(np.stack([synthetic_scene(s, SIZE, style_seed=s + 7_000_000)[0] for s in seeds])))
    stage = cascade.stages[0]
    rows = [{"setting": "base 64×112 (input)", "n": a.n, "miou": label_consistency(to_uint8(base.float(), check_range=False), low_labels)["miou"]}]
    for text in a.settings:
        sampler, spacing, steps, aug = text.split(":")
        stage.sampling = {**stage.sampling, "sampler": sampler, "spacing": spacing, "steps": int(steps)}
        t = time.perf_counter()
        with torch.inference_mode():
            y = cascade.lift(0, base, labels, torch.Generator().manual_seed(1), aug_alpha_bar=float(aug), progress=False)
        secs = (time.perf_counter() - t) / a.n
        imgs = to_uint8(y.float(), check_range=False)
        back = from_uint8(shrink(imgs))
        rows.append({"setting": text, "n": a.n, "miou": label_consistency(shrink(imgs), low_labels)["miou"],
                     "kid": kid_from_features(f_truth, ext.extract(imgs, progress=False), subset_size=a.n)["kid"],
                     "fine_power": fine_power(radial_power(imgs)) / drawn_power,
                     "psnr": float(10 * torch.log10(4 / (back - base.clamp(-1, 1)).square().mean())),
                     "seconds_per_image": secs})
        print(rows[-1], flush=True)
    meta = {"command": "python benchmarks/cascade_settings.py " + " ".join(f"--{k} {v if not isinstance(v, list) else ' '.join(v)}" for k, v in vars(a).items()),
            "psnr": "between the lifted image shrunk to 64×112 and the base sample it was given",
            "data": f"synthetic held-out maps (seeds {seeds[0]}…{seeds[-1]}) drawn at 256×448", "threads": torch.get_num_threads()}
    out = write_report(a.out, rows, "setting", "stage setting (sampler:spacing:steps:aug ᾱ)", "Super-resolution stage settings", meta)
    print((out / "results.md").read_text().split("\n- **")[0])


if __name__ == "__main__":
    main()
