"""How few network calls does the demo need? DPM-Solver++(2M) at 8/10/15/20 steps against DDIM-40.

On the same held-out synthetic label maps and the same seed, each setting is scored by label-consistency mIoU (the
shipped segmenter), KID against the real (synthetic) images of those maps, and time per image; then
`surgdiff sample` itself is timed end to end (a fresh process: import, model load, 8 bundled maps, PNG writing) with
each setting. A setting qualifies when its mIoU is at least 97 % of DDIM-40's and its KID at most DDIM-40's + 3 %
of it; the fastest qualifying one is the candidate default.

    python benchmarks/fast_sampling.py [--model demo] [--n 128] [--out benchmarks/tables/fast_sampling]

Guidance and x̂0 clip are the model's recommendation (its config.json `sampling`). DPM-Solver++ uses log-SNR step
spacing (its paper's choice), DDIM trailing. Synthetic data only.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from surgdiff.bench import eval_data, evaluate
from surgdiff.cascade import generate_images
from surgdiff.samplers import sampling_settings
from surgdiff.model import load_pretrained

SETTINGS = [("ddim", 40, "trailing"), ("dpmpp_2m", 8, "logsnr"), ("dpmpp_2m", 10, "logsnr"),
            ("dpmpp_2m", 15, "logsnr"), ("dpmpp_2m", 20, "logsnr"), ("ddim", 20, "trailing"), ("ddim", 10, "trailing")]


def generator(model, sampler: str, steps: int, spacing: str, batch: int = 32):
    def generate(labels: np.ndarray, seed: int = 0) -> np.ndarray:
        return generate_images(model, labels, seed=seed, batch_size=batch, sampler=sampler, steps=steps, spacing=spacing)
    return generate


def cli_seconds(model: str, sampler: str, steps: int) -> float:
    "Wall time of `surgdiff sample` with this setting on the bundled label maps, in a fresh process."
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "surgdiff.cli", "sample", "--model", model, "--sampler", sampler,
                        "--steps", str(steps), "--out", str(Path(d) / "o"), "--quiet"], check=True, capture_output=True)
        return time.perf_counter() - t


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="demo")
    p.add_argument("--n", type=int, default=128)
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    model = load_pretrained(a.model)
    rec = sampling_settings(model)
    ev = eval_data("synthetic", a.n, tuple(model.config.image_size))
    rows = []
    for sampler, steps, spacing in SETTINGS:
        row = evaluate(generator(model, sampler, steps, spacing), ev, seed=0, diversity_labels=0, progress=False)
        row.pop("_images")
        rows.append(dict(sampler=sampler, steps=steps, spacing=spacing, cli_seconds=cli_seconds(a.model, sampler, steps),
                         **{k: row[k] for k in ("miou", "kid", "fid", "seconds_per_image")}))
        print(json.dumps(rows[-1]), flush=True)
    ref = rows[0]
    for r in rows:
        r["qualifies"] = bool(r["miou"] >= 0.97 * ref["miou"] and r["kid"] <= ref["kid"] + 0.03 * abs(ref["kid"]))
    best = min((r for r in rows if r["qualifies"]), key=lambda r: r["seconds_per_image"])
    lines = [f"# Fast sampling: {a.model}, {a.n} held-out synthetic maps at {model.config.image_size[0]}×"
             f"{model.config.image_size[1]}, guidance {rec['guidance']}, clip {rec['clip']}, {torch.get_num_threads()} threads",
             "", "| sampler | steps | spacing | label mIoU ↑ | KID ↓ | FID ↓ | s / image | `surgdiff sample` wall s (8 maps) | within 3 % of DDIM-40 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['sampler']} | {r['steps']} | {r['spacing']} | {r['miou']:.3f} | {r['kid']:.4f} | {r['fid']:.1f} | "
                     f"{r['seconds_per_image']:.3f} | {r['cli_seconds']:.1f} | {'yes' if r['qualifies'] else 'no'} |")
    lines += ["", f"Fastest qualifying: {best['sampler']} {best['steps']} steps ({best['spacing']}).", "",
              "Command: `python benchmarks/fast_sampling.py " + " ".join(sys.argv[1:]) + "`"]
    print("\n".join(lines))
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "results.md").write_text("\n".join(lines) + "\n")
        (a.out / "results.json").write_text(json.dumps(dict(rows=rows, best=best, recommendation=rec), indent=2) + "\n")


if __name__ == "__main__":
    main()
