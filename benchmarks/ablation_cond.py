"""Does SPADE help the label steer the image? concat vs spade vs both, at equal compute.

The thesis's question, asked of the demo's architecture (tiny preset, 1 residual block per level) at a smaller
16:9 size. Each conditioning mode trains from scratch on the same synthetic scenes for the same number of
*floating-point operations* (steps = budget / FLOPs of one training step of that mode, counted by
torch.utils.flop_counter on a forward + backward pass), for each seed. Every model is then scored on the same
held-out label maps (synthetic_scene(HELDOUT_SEED_OFFSET + k)): label-consistency mIoU of the shipped
segmenter on its samples, and KID of its samples against the real (synthetic) images of those maps.

    python benchmarks/ablation_cond.py [--size 32 56] [--budget-steps 3000] [--seeds 0 1 2] [--n 128]
                                       [--out benchmarks/tables/ablation_cond]

--budget-steps is the number of steps the most expensive mode ("both") gets; the others get more.
Sampling: DDIM, 20 steps, guidance 1.5, x̂0 clip 1, seed 0 (the same start noise for every model).
Writes results.md and results.json to --out. Synthetic data only: the numbers say nothing about real CaDIS.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from surgdiff.bench import DiffusionGenerator, eval_data, evaluate
from surgdiff.metrics import mean_ci95
from surgdiff.model import DiffusionModel
from surgdiff.data import SyntheticScenes
from surgdiff.train import TRAIN_PRESETS, TrainConfig, diffusion_loss, train

CONDS = ("concat", "spade", "both")


def config(cond: str, size: tuple[int, int], steps: int, seed: int, out: Path) -> TrainConfig:
    demo = TRAIN_PRESETS["demo"]
    return TrainConfig(**{**demo, "cond": cond, "image_size": size, "steps": steps, "seed": seed, "sample_every": 0,
                          "checkpoint_every": steps, "keep_checkpoints": 1, "out": str(out / f"{cond}_seed{seed}")})


def flops_per_step(cfg: TrainConfig) -> int:
    "FLOPs of one training step (forward + backward) of `cfg`'s model on one batch."
    model = DiffusionModel(cfg.model_config())
    x0 = torch.zeros(cfg.batch_size, 3, *cfg.image_size)
    label = torch.zeros(cfg.batch_size, *cfg.image_size, dtype=torch.long)
    with FlopCounterMode(display=False) as fc:
        diffusion_loss(model, x0, label, model.schedule, cfg, torch.Generator().manual_seed(0)).backward()
    return fc.get_total_flops()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, nargs=2, default=[32, 56], metavar=("H", "W"))
    p.add_argument("--budget-steps", type=int, default=3000, help="training steps of the costliest mode (both)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--n", type=int, default=128, help="held-out label maps to score")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", default="runs/ablation_cond", help="where the training runs go")
    p.add_argument("--out", default="benchmarks/tables/ablation_cond")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    size, runs, out = tuple(a.size), Path(a.runs), Path(a.out)
    flops = {c: flops_per_step(config(c, size, 1, 0, runs)) for c in CONDS}
    budget = a.budget_steps * max(flops.values())
    steps = {c: int(round(budget / flops[c])) for c in CONDS}
    print("GFLOPs per training step:", {c: round(f / 1e9, 2) for c, f in flops.items()}, "steps:", steps, flush=True)
    ds = SyntheticScenes(TRAIN_PRESETS["demo"]["synthetic_scenes"], size, progress=False)
    ev = eval_data("synthetic", a.n, size)
    trained = []
    for seed in a.seeds:            # train everything first, then score: the scoring uses the shipped segmenter
        for c in CONDS:
            cfg = config(c, size, steps[c], seed, runs)
            t0 = time.perf_counter()
            res = train(cfg, resume=(Path(cfg.out) / "config.json").exists(), progress=False, dataset=ds)  # continue or start
            trained.append((c, seed, cfg, res, time.perf_counter() - t0))
            print(f"trained {c} seed {seed}: {steps[c]} steps in {trained[-1][-1]:.0f} s", flush=True)
    rows = []
    for c, seed, cfg, res, wall in trained:
        gen = DiffusionGenerator(res.model, steps=20, guidance=1.5, clip=1.0, batch_size=32)
        row = evaluate(gen, ev, seed=0, diversity_labels=0, progress=False)
        row.pop("_images")
        rows.append(dict(cond=c, seed=seed, steps=steps[c], gflops_per_step=flops[c] / 1e9, train_s=round(wall, 1),
                         final_loss=float(np.mean([h["loss"] for h in res.history[-20:]])), **row))
        print(json.dumps({k: rows[-1][k] for k in ("cond", "seed", "steps", "train_s", "miou", "kid", "final_loss")}),
              flush=True)
    out.mkdir(parents=True, exist_ok=True)
    means = {c: {k: float(np.mean([r[k] for r in rows if r["cond"] == c])) for k in ("miou", "kid", "fid", "psnr")}
             for c in CONDS}
    ci95 = {c: {k: list(mean_ci95([r[k] for r in rows if r["cond"] == c])[1:]) for k in ("miou", "kid")} for c in CONDS}
    lines = [f"# concat vs spade vs both at equal compute ({size[0]}×{size[1]}, synthetic scenes)", "",
             f"Budget: {a.budget_steps} steps of 'both' = {budget / 1e12:.2f} TFLOPs per run; batch 16; "
             f"seeds {a.seeds}; scored on {a.n} held-out maps (DDIM 20 steps, guidance 1.5, clip 1).", "",
             "| cond | steps | GFLOPs/step | seed | label mIoU ↑ | KID ↓ | FID ↓ | train s |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['cond']} | {r['steps']} | {r['gflops_per_step']:.2f} | {r['seed']} | {r['miou']:.3f} | "
                     f"{r['kid']:.4f} | {r['fid']:.1f} | {r['train_s']:.0f} |")
    lines += ["", "| cond | mean label mIoU ↑ [95 % CI] | mean KID ↓ [95 % CI] | mean FID ↓ |", "|---|---|---|---|"]
    lines += [f"| {c} | {m['miou']:.3f} [{ci95[c]['miou'][0]:.3f}, {ci95[c]['miou'][1]:.3f}] | {m['kid']:.4f} "
              f"[{ci95[c]['kid'][0]:.4f}, {ci95[c]['kid'][1]:.4f}] | {m['fid']:.1f} |" for c, m in means.items()]
    lines += ["", "Command: `python benchmarks/ablation_cond.py " + " ".join(__import__("sys").argv[1:]) + "`"]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps(dict(rows=rows, means=means, ci95=ci95, steps=steps, flops=flops), indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
