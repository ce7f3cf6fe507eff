"""Training throughput of the demo U-Net on this machine: fp32 vs bf16 autocast vs channels_last.

Reports images/s for one full training step (forward, backward, AdamW, EMA) and the achieved FLOP/s
as a fraction of the machine's matmul peak measured in the same run.

    python benchmarks/train_throughput.py [--model tiny] [--size 64] [--batch 16] [--steps 8]
"""
import argparse
import copy
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from surgdiff.data import synthetic_scene
from surgdiff.fit import ema_update
from surgdiff.train import TrainConfig, bf16_available, diffusion_loss


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    "Best FLOP/s of an n×n matmul in `dtype` (the practical peak of this CPU for dense work)."
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def step_flops(model, cfg, x0, label) -> float:
    "FLOPs of one forward + backward pass, counted by PyTorch's FlopCounterMode."
    with FlopCounterMode(display=False) as fc:
        loss = diffusion_loss(model, x0, label, model.schedule, cfg, torch.Generator().manual_seed(0), None)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return fc.get_total_flops()


def images_per_second(model, cfg, x0, label, amp, steps: int) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ema = copy.deepcopy(model).requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    times = []
    for i in range(steps + 2):  # two warm-up steps
        t = time.perf_counter()
        loss = diffusion_loss(model, x0, label, model.schedule, cfg, g, amp)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema_update(ema, model, 0.999)
        times.append(time.perf_counter() - t)
    return x0.shape[0] / (sorted(times[2:])[len(times[2:]) // 2])  # median step


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=8)
    a = p.parse_args()
    from surgdiff.model import DiffusionModel
    pairs = [synthetic_scene(i, (a.size, a.size)) for i in range(a.batch)]
    x0 = torch.stack([torch.from_numpy(im).permute(2, 0, 1).float() / 127.5 - 1 for im, _ in pairs])
    label = torch.stack([torch.from_numpy(lb).long() for _, lb in pairs])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, bf16 native: {bf16_available(torch.device('cpu'))}")
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(f"matmul peak: fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s")
    base = TrainConfig(model=a.model, image_size=(a.size, a.size), channels_last=False, label_dropout=0.0)
    torch.manual_seed(0)
    model = DiffusionModel(base.model_config())
    flops = step_flops(model, base, x0, label) / a.batch
    print(f"model {a.model}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, "
          f"{flops / 1e9:.2f} GFLOP per image per training step (forward + backward)")
    print(f"{'variant':<28}{'images/s':>10}{'vs fp32':>10}{'GFLOP/s':>10}{'of peak':>10}")
    ref = None
    for name, cl, amp in [("fp32", False, None), ("fp32 + channels_last", True, None),
                          ("bf16 autocast", False, torch.bfloat16), ("bf16 + channels_last", True, torch.bfloat16)]:
        cfg = TrainConfig(**{**base.to_dict(), "channels_last": cl})
        torch.manual_seed(0)
        m = DiffusionModel(cfg.model_config())
        if cl:
            m = m.to(memory_format=torch.channels_last)
        ips = images_per_second(m, cfg, x0, label, amp, a.steps)
        ref = ref or ips
        achieved = ips * flops
        peak = peaks["bf16" if amp else "fp32"]
        print(f"{name:<28}{ips:>10.2f}{ips / ref:>9.2f}x{achieved / 1e9:>10.1f}{achieved / peak:>9.1%}")


if __name__ == "__main__":
    main()
