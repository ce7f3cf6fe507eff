"""Does generation help a segmenter when labelled data are scarce? The thesis's purpose, measured without a confound.

For each N (labelled pairs available), a diffusion generator is trained on those N pairs only (the demo's
architecture and recipe at a smaller size, the same number of steps for every N), and a segmenter is trained on

- real only:                 the N real pairs, no augmentation;
- real + classic aug.:       the N real pairs with flips and colour jitter (`surgdiff.segment.classic_augment`),
                             the honest baseline to beat;
- real + generated (layout): the N real pairs + one generated image for each of M = 4N new label maps drawn by
                             the scene layout generator (`synthetic_scene`'s label maps, seeds LAYOUT_OFFSET + k);
- real + generated (edits):  the N real pairs + one generated image for each of M = 4N edits of the N maps
                             (instruments moved, rotated, scaled, removed or added with the label-editing functions
                             of `surgdiff.data`: the thesis's "cheap label maps" case);
- real + rendered (layout, oracle): the N real pairs + the *real* images of the same M = 4N layout maps (the
                             renderer's, not the generator's): what a perfect generator would add; the gap between
                             it and the generated row is the generator's fault, the rest is what new layouts are worth.

Every segmenter has the same architecture, steps and batch size, is trained with 3 seeds, and is scored (mIoU,
`exp1` grouping) on the same held-out scenes (seeds HELDOUT_SEED_OFFSET + k). The 95 % interval is the mean ±
t(0.975, seeds-1) · sd / sqrt(seeds) over the segmenter seeds; the real pairs, the generator and its images are
fixed per N (one generator run per N), so the interval covers segmenter training noise only.

Synthetic data only (CaDIS-shaped scenes drawn by the package): the numbers say nothing about real CaDIS.

    python benchmarks/downstream_scarce.py [--n-real 16 64 256] [--seeds 0 1 2] [--size 32 56]
        [--gen-steps 1200] [--seg-steps 600] [--n-eval 256] [--runs runs/downstream_scarce]
        [--out benchmarks/tables/downstream_scarce]

Everything is cached under --runs (generators, generated images, one score per segmenter), so a stopped run
continues where it stopped; results are rewritten after each N. The settings that decide the cached results are
recorded in --runs/settings.json: a run with other settings into the same folder is refused. --conditions picks
which rows to compute and report (default: all).
"""
import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from surgdiff.bench import DiffusionGenerator, command_line, write_report
from surgdiff.data import (INSTRUMENT_WEIGHTS, INSTRUMENTS, add_instrument, colorize, handle_of, remove_classes,
                           transform_instrument)
from surgdiff.io import load_json, save_json
from surgdiff.metrics import mean_ci95
from surgdiff.model import load_pretrained
from surgdiff.segment import (HELDOUT_SEED_OFFSET, SegmenterConfig, classic_augment, label_consistency,
                              synthetic_pairs, train_segmenter)
from surgdiff.train import TRAIN_PRESETS, TrainConfig, train

LAYOUT_OFFSET = 5_000_000  # new label maps from the layout generator: seeds far from training (0…) and held-out (10⁶…)
CONDITIONS = ("real only", "real + classic aug.", "real + generated (layout)", "real + generated (edits)",
              "real + rendered (layout, oracle)")
SAMPLING = dict(sampler="dpmpp_2m", steps=10, spacing="logsnr", guidance=1.5, clip=1.0)


def generator_config(n: int, size: tuple[int, int], steps: int, runs: Path, threads: int | None) -> TrainConfig:
    "The demo's recipe at `size`, trained on the first `n` synthetic scenes only."
    return TrainConfig(**{**TRAIN_PRESETS["demo"], "image_size": size, "synthetic_scenes": n, "steps": steps,
                          "sample_every": 0, "checkpoint_every": 250, "keep_checkpoints": 1, "num_threads": threads,
                          "sampling": SAMPLING, "out": str(runs / f"N{n}" / "generator")})


def random_edit(label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    "One random edit of a label map: an instrument moved/rotated/scaled, removed, or a new one added."
    tips = [t for t, _, _ in INSTRUMENTS if (label == t).any()]
    op = rng.choice(["move", "remove", "add"], p=[0.4, 0.2, 0.4]) if tips else "add"
    H, W = label.shape
    if op == "move":
        return transform_instrument(label, int(rng.choice(tips)), dy=rng.uniform(-0.15, 0.15) * H,
                                    dx=rng.uniform(-0.15, 0.15) * W, angle=rng.uniform(-40, 40), scale=rng.uniform(0.8, 1.2))
    if op == "remove":
        t = int(rng.choice(tips))
        h = handle_of(t)
        return remove_classes(label, [t] + ([h] if h is not None else []))
    t = int(INSTRUMENTS[rng.choice(len(INSTRUMENTS), p=INSTRUMENT_WEIGHTS)][0])
    pupil = np.argwhere(label == 0)
    centre = pupil.mean(0) if len(pupil) else np.array([H / 2, W / 2])
    tip = tuple(centre + rng.normal(0, 0.08 * min(H, W), 2))
    return add_instrument(label, t, tip=tip, angle=rng.uniform(0, 360))


def edited_maps(labels: np.ndarray, m: int, seed: int = 0) -> np.ndarray:
    "`m` edits of `labels` (map k % len(labels) for edit k), each from its own seeded stream."
    return np.stack([random_edit(labels[k % len(labels)], np.random.default_rng((seed, k))) for k in range(m)])


def generated_pairs(n: int, a, real_labels: np.ndarray, runs: Path) -> dict[str, np.ndarray]:
    "Train (or reload) the N-pair generator, then draw its images for M = 4N layout maps and M edits (cached)."
    folder = runs / f"N{n}"
    cache = folder / "generated.npz"
    if cache.exists():
        return dict(np.load(cache))
    cfg = generator_config(n, tuple(a.size), a.gen_steps, runs, a.threads)
    t0 = time.perf_counter()
    train(cfg, resume=(Path(cfg.out) / "config.json").exists(), progress=False)
    train_s = time.perf_counter() - t0
    print(f"N={n}: generator trained ({a.gen_steps} steps, {train_s:.0f} s)", flush=True)
    gen = DiffusionGenerator(load_pretrained(cfg.out), batch_size=64, **SAMPLING)
    m = 4 * n
    _, layout = synthetic_pairs(range(LAYOUT_OFFSET, LAYOUT_OFFSET + m), tuple(a.size))
    edits = edited_maps(real_labels, m)
    t0 = time.perf_counter()
    out = dict(layout_images=gen(layout, seed=1), layout_labels=layout, edit_images=gen(edits, seed=2), edit_labels=edits)
    gen_s = time.perf_counter() - t0
    print(f"N={n}: {2 * m} images generated in {gen_s:.0f} s", flush=True)
    save_json(folder / "generated.json", {"generator_train_s": train_s, "generation_s": gen_s, "describe": gen.describe()})
    tmp = folder / "generated.partial.npz"
    np.savez_compressed(tmp, **out)
    os.replace(tmp, cache)  # whole or absent
    return out


def training_set(cond: str, real: tuple[np.ndarray, np.ndarray], g: dict) -> tuple[np.ndarray, np.ndarray, int]:
    "The images, labels and the number of generated pairs of one condition."
    if cond in ("real only", "real + classic aug."):
        return (*real, 0)
    if "oracle" in cond:  # the renderer's own images of the layout maps: a perfect generator
        imgs, labs = synthetic_pairs(range(LAYOUT_OFFSET, LAYOUT_OFFSET + len(g["layout_labels"])), real[0].shape[1:3])
        assert np.array_equal(labs, g["layout_labels"])
        return np.concatenate([real[0], imgs]), np.concatenate([real[1], labs]), 0
    kind = "layout" if "layout" in cond else "edit"
    imgs, labs = g[f"{kind}_images"], g[f"{kind}_labels"]
    return np.concatenate([real[0], imgs]), np.concatenate([real[1], labs]), len(imgs)


def figure(rows: list[dict]) -> Figure:
    "mIoU against N for each condition, with the 95 % intervals."
    fig = Figure(figsize=(6.4, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for i, cond in enumerate(CONDITIONS):
        rs = [r for r in rows if r["condition"] == cond]
        if not rs:
            continue
        x = np.array([r["real_pairs"] for r in rs]) * (1 + 0.04 * (i - 2))  # spread the bars apart
        y = np.array([r["miou_mean"] for r in rs])
        err = np.abs(np.array([r["miou_ci95"] for r in rs]).T - y)
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=cond)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("real labelled pairs N")
    ax.set_ylabel("segmenter mIoU (held-out scenes)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title("segmenter trained on N real pairs, with and without generated pairs (mean, 95 % CI)", fontsize=9)
    fig.tight_layout()
    return fig


def examples(gens: dict[int, dict], k: int = 4) -> Figure:
    "For each N, k layout maps and k edited maps with the N-pair generator's image of each."
    ns = sorted(gens)
    fig = Figure(figsize=(2.6 * 2 * k / 2, 2.6 * len(ns) * 0.75 + 0.4), dpi=100)
    FigureCanvasAgg(fig)
    for r, n in enumerate(ns):
        g = gens[n]
        top = np.concatenate([colorize(l) for l in g["layout_labels"][:k // 2]] + [colorize(l) for l in g["edit_labels"][:k // 2]], 1)
        bot = np.concatenate(list(g["layout_images"][:k // 2]) + list(g["edit_images"][:k // 2]), 1)
        ax = fig.add_subplot(len(ns), 1, r + 1)
        ax.imshow(np.concatenate([top, bot]), interpolation="nearest")
        ax.axis("off")
        ax.set_title(f"N = {n}: generator trained on {n} pairs — left {k // 2}: layout-generator maps, right {k // 2}: "
                     "edited maps", fontsize=8)
    fig.tight_layout()
    return fig


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-real", type=int, nargs="+", default=[16, 64, 256])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="segmenter seeds")
    p.add_argument("--size", type=int, nargs=2, default=[32, 56], metavar=("H", "W"))
    p.add_argument("--gen-steps", type=int, default=1200, help="generator training steps (batch 16), the same for every N")
    p.add_argument("--seg-steps", type=int, default=600, help="segmenter training steps (batch 16)")
    p.add_argument("--n-eval", type=int, default=256, help="held-out scenes every segmenter is scored on")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--runs", default="runs/downstream_scarce")
    p.add_argument("--out", default="benchmarks/tables/downstream_scarce")
    p.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=CONDITIONS, metavar="CONDITION",
                   help="rows to compute and report (default: all): " + "; ".join(CONDITIONS))
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    size, runs = tuple(a.size), Path(a.runs)
    runs.mkdir(parents=True, exist_ok=True)
    seg_cfg = SegmenterConfig(image_size=size)
    settings = {"size": list(size), "gen_steps": a.gen_steps, "seg_steps": a.seg_steps, "n_eval": a.n_eval,
                "sampling": SAMPLING, "segmenter": json.loads(json.dumps(seg_cfg.to_dict())), "layout_offset": LAYOUT_OFFSET}
    if (runs / "settings.json").exists() and load_json(runs / "settings.json") != settings:
        raise SystemExit(f"{runs} holds results made with other settings ({runs / 'settings.json'}); use another --runs")
    save_json(runs / "settings.json", settings)
    scores_file = runs / "scores.json"
    scores = load_json(scores_file) if scores_file.exists() else {}
    eval_imgs, eval_labs = synthetic_pairs(range(HELDOUT_SEED_OFFSET, HELDOUT_SEED_OFFSET + a.n_eval), size)
    rows, gens = [], {}
    for n in a.n_real:
        real = synthetic_pairs(range(n), size)  # the very scenes the N-pair generator trains on (seeds 0 … N-1)
        gens[n] = g = generated_pairs(n, a, real[1], runs)
        for cond in [c for c in CONDITIONS if c in a.conditions]:
            x, y, m = training_set(cond, real, g)
            for s in a.seeds:
                key = f"{n}|{cond}|{s}"
                if key in scores:
                    continue
                t0 = time.perf_counter()
                seg = train_segmenter((x, y), seg_cfg, steps=a.seg_steps, seed=s, progress=False,
                                      augment=classic_augment if "classic" in cond else False)
                sc = label_consistency(eval_imgs, eval_labs, seg)
                scores[key] = {"miou": sc["miou"], "pixel_accuracy": sc["pixel_accuracy"],
                               "seconds": time.perf_counter() - t0}
                save_json(scores_file, scores)  # atomic: a stopped run never leaves half a file
                print(f"N={n} {cond} seed {s}: mIoU {sc['miou']:.3f}", flush=True)
            mious = [scores[f"{n}|{cond}|{s}"]["miou"] for s in a.seeds]
            rows.append({"condition": cond, "real_pairs": n, "generator_train_pairs": n if m else 0, "generated": m,
                         "seeds": list(a.seeds), "miou_mean": float(np.mean(mious)), "miou_ci95": list(mean_ci95(mious)[1:]),
                         "miou_per_seed": mious, "extra_real_pairs": 4 * n if "oracle" in cond else 0,
                         "pixel_accuracy": float(np.mean([scores[f"{n}|{cond}|{s}"]["pixel_accuracy"] for s in a.seeds]))})
        gen_info = {n: json.loads((runs / f"N{n}" / "generated.json").read_text()) for n in gens}
        meta = {"data": f"synthetic CaDIS-shaped scenes at {size[0]}×{size[1]}; real pairs: seeds 0…N-1; new layout maps: "
                        f"seeds {LAYOUT_OFFSET}…; held-out: {a.n_eval} scenes, seeds {HELDOUT_SEED_OFFSET}…",
                "generator": f"the demo's recipe (TRAIN_PRESETS['demo']) at {size[0]}×{size[1]}, {a.gen_steps} steps × 16, "
                             f"trained on the N real pairs only; sampled with {gen_info[n]['describe']}",
                "generator seconds": {str(k): round(v["generator_train_s"]) for k, v in gen_info.items()},
                "generation seconds": {str(k): round(v["generation_s"]) for k, v in gen_info.items()},
                "segmenter": f"SegmenterConfig {seg_cfg.to_dict()}, {a.seg_steps} steps × 16, AdamW 3e-3; "
                             "no augmentation except the classic-aug. row (flips, colour jitter)",
                "size": list(size), "n_eval": a.n_eval, "gen_steps": a.gen_steps, "seg_steps": a.seg_steps,
                "interval": "95 % CI: mean ± t(0.975, seeds-1)·sd/√seeds over segmenter seeds (training noise only)",
                "command": "python benchmarks/" + command_line()}
        md_rows = [{**r, "training data": f"N={r['real_pairs']}: {r['condition']}", "miou": r["miou_mean"]} for r in rows]
        out = write_report(a.out, md_rows, "training data", "training data",
                           "Downstream segmentation under scarcity: N real pairs, with and without generated pairs", meta)
        lines = ["", "| N real | condition | generated | mIoU (mean) | 95 % CI | Δ vs real only | per seed |",
                 "|---|---|---|---|---|---|---|"]
        for r in rows:
            base = next(b for b in rows if b["real_pairs"] == r["real_pairs"] and b["condition"] == "real only")
            lines.append(f"| {r['real_pairs']} | {r['condition']} | {r['generated']} | {r['miou_mean']:.3f} | "
                         f"{r['miou_ci95'][0]:.3f}–{r['miou_ci95'][1]:.3f} | {r['miou_mean'] - base['miou_mean']:+.3f} | "
                         f"{', '.join(f'{v:.3f}' for v in r['miou_per_seed'])} |")
        with open(out / "results.md", "a") as f:
            f.write("\n".join(lines) + "\n")
        figure(rows).savefig(out / "figure.png", dpi=100)
        examples(gens).savefig(out / "examples.png", dpi=100)
        print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
