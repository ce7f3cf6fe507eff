"""U-Net throughput: SR3UNet (each `cond` mode) vs diffusers' UNet2DModel, in one process.

Images per second for a forward pass (inference, no grad) and for a training step's forward +
backward, at 64x64 by default. The diffusers model mirrors the SR3UNet's structure (same channel
widths, residual blocks per level, attention levels, scale-shift noise embedding, BigGAN-style
resnet up/down sampling) and the "concat" mode's input channels (3 + num_classes), so its
parameter count matches to within a few percent; both counts are printed and checked (+-10%).

Timings are interleaved (one iteration of every model in turn, so all see the same machine load)
and the best of `--iters` iterations is reported (the machine this was written on is shared; the
best iteration is the least disturbed one). diffusers is needed only here, never at runtime.

    python benchmarks/unet_throughput.py                      # tiny preset, batch 8, 64x64, CPU
    python benchmarks/unet_throughput.py --variants           # + the SPADE forms of 04_spade
    python benchmarks/unet_throughput.py --threads 1          # steadier on a loaded machine
    python benchmarks/unet_throughput.py --preset sr3 --size 128 --batch 16 --device cuda
    python benchmarks/unet_throughput.py --demo --threads 1   # the shipped demo's U-Net at 64x112
    python benchmarks/unet_throughput.py --stage --channels-last --batch 4   # the shipped demo-sr stage at 256x448

--channels-last puts both models and their inputs in NHWC memory layout (the stage samples that way).
A stage's diffusers twin takes the upsampled image as 3 more input channels, as SR3UNet does.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from surgdiff.layers import one_hot_labels
from surgdiff.unet import SR3UNet, UNetConfig, count_parameters

SPADE_VARIANTS = {  # UNetConfig overrides for --variants (cond="spade")
    "spade h128 per-layer 3x3": dict(spade_hidden=128, spade_shared=False, spade_kernel=3),
    "spade h64 per-layer 3x3": dict(spade_hidden=64, spade_shared=False, spade_kernel=3),
    "spade h32 shared 3x3": dict(spade_hidden=32, spade_shared=True, spade_kernel=3),
    "spade h64 shared 1x1": dict(spade_hidden=64, spade_shared=True, spade_kernel=1),
    "spade h32 shared 1x1": dict(spade_hidden=32, spade_shared=True, spade_kernel=1),
}
REFERENCE = "diffusers UNet2DModel"


def diffusers_twin(config: UNetConfig, size: tuple[int, int]):
    "A diffusers UNet2DModel with the same structure as `SR3UNet(config)` in 'concat' mode."
    from diffusers import UNet2DModel

    sides = [config.attn_side // 2**i for i in range(config.levels)]  # attn_side = the smaller side
    attn = [side in config.attn_resolutions for side in sides]
    return UNet2DModel(
        sample_size=size,
        in_channels=config.in_channels + config.image_channels + config.num_classes,
        out_channels=config.out_channels,
        block_out_channels=tuple(config.base_channels * m for m in config.channel_mults),
        layers_per_block=config.num_res_blocks,
        # BigGAN-style resampling inside residual blocks at every level, as SR3UNet does
        down_block_types=tuple("AttnDownBlock2D" if a else "ResnetDownsampleBlock2D" for a in attn),
        up_block_types=tuple("AttnUpBlock2D" if a else "ResnetUpsampleBlock2D" for a in reversed(attn)),
        attention_head_dim=None,  # one head spanning all channels, like SR3UNet's num_heads=1
        norm_num_groups=config.norm_groups,
        resnet_time_scale_shift="scale_shift",
        downsample_type="resnet",
        upsample_type="resnet",
        dropout=config.dropout,
        add_attention=config.mid_attention,
    )


class DiffusersAdapter(torch.nn.Module):
    "Calls UNet2DModel with the project's contract: model(x_t, alpha_bar, label)."

    def __init__(self, unet, num_classes: int):
        super().__init__()
        self.unet, self.num_classes = unet, num_classes

    def forward(self, x_t, alpha_bar, label, lowres=None):
        onehot = one_hot_labels(label, self.num_classes, label.shape, dtype=x_t.dtype, device=x_t.device)
        inputs = [x_t, onehot] if lowres is None else [x_t, lowres, onehot]
        return self.unet(torch.cat(inputs, 1), 1000 * alpha_bar.sqrt(), return_dict=False)[0]


def benchmark(models: dict, batch: int, size: tuple[int, int], num_classes: int, warmup: int, iters: int,
              train: bool, bf16: bool, device: str = "cpu", image_channels: int = 0,
              channels_last: bool = False) -> dict[str, float]:
    "Images/s per model: best of `iters` interleaved iterations, after `warmup`."
    g = torch.Generator().manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x_t = torch.randn(batch, 3, *size, generator=g).to(device).contiguous(memory_format=fmt)
    cond = (torch.randn(batch, image_channels, *size, generator=g).to(device).contiguous(memory_format=fmt),) if image_channels else ()
    label = torch.randint(0, num_classes, (batch, *size), generator=g).to(device)
    alpha_bar = torch.rand(batch, generator=g).to(device)
    autocast = (lambda: torch.autocast(device, dtype=torch.bfloat16)) if bf16 else nullcontext
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def step(model):
        if train:
            with autocast():
                loss = (model(x_t, alpha_bar, label, *cond).float() - x_t).pow(2).mean()
            loss.backward()
            model.zero_grad(set_to_none=True)
        else:
            with torch.no_grad(), autocast():
                model(x_t, alpha_bar, label, *cond)

    for m in models.values():
        m.train(train)
    times = {name: [] for name in models}
    for i in range(warmup + iters):
        for name, m in models.items():
            sync()
            t0 = time.perf_counter()
            step(m)
            sync()
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {name: batch / min(ts) for name, ts in times.items()}


def report(title: str, ips: dict[str, float], params: dict[str, int]):
    print(f"\n{title}\n{'':26s} {'img/s':>8s} {'vs diffusers':>13s} {'per param':>10s} {'time vs concat':>15s}")
    for name, v in ips.items():
        ratio = v / ips[REFERENCE]
        per_param = ratio * params[name] / params[REFERENCE]
        vs_concat = f"{100 * (ips['SR3UNet concat'] / v - 1):+14.0f}%" if "SR3UNet concat" in ips else ""
        print(f"  {name:24s} {v:8.2f} {ratio:12.2f}x {per_param:9.2f}x {vs_concat}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, nargs="+", default=[64], help="H [W] (W = H if one number)")
    p.add_argument("--demo", action="store_true",
                   help="the shipped demo's U-Net (its config.json, 1 block per level) at its size, not a preset")
    p.add_argument("--stage", action="store_true", help="the shipped super-resolution stage demo-sr at 256x448 ('concat' only)")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory layout for every model and input")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--modes", nargs="+", default=["concat", "spade", "both"])
    p.add_argument("--variants", action="store_true", help="also time the SPADE forms of 04_spade (training step)")
    p.add_argument("--no-bf16", action="store_true", help="skip the bf16-autocast line")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    if args.demo or args.stage:
        name = "demo_sr" if args.stage else "demo"
        demo = json.loads((Path(__file__).resolve().parents[1] / f"surgdiff/assets/{name}/config.json").read_text())
        make = lambda **kw: UNetConfig.from_dict({**demo["unet"], **kw})
        size, args.preset = tuple(demo["image_size"]), name
        if args.stage:
            args.modes = ["concat"]
    else:
        make = lambda **kw: UNetConfig.preset(args.preset, **kw)
        size = (args.size[0], args.size[-1])
    config = make()
    models = {f"SR3UNet {c}": SR3UNet(make(cond=c)) for c in args.modes}
    models[REFERENCE] = DiffusersAdapter(diffusers_twin(config, size), config.num_classes)
    variants = {name: SR3UNet(make(cond="spade", **kw))
                for name, kw in SPADE_VARIANTS.items()} if args.variants else {}
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    models = {n: m.to(args.device, memory_format=fmt) for n, m in models.items()}
    variants = {n: m.to(args.device, memory_format=fmt) for n, m in variants.items()}
    params = {name: count_parameters(m) for name, m in {**models, **variants}.items()}

    where = torch.cuda.get_device_name() if args.device == "cuda" else \
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads"
    print(f"{where}; torch {torch.__version__}")
    print(f"preset {args.preset!r}, batch {args.batch}, {size[0]}x{size[1]}, "
          f"warmup {args.warmup}, best of {args.iters} interleaved iterations" + (", channels_last" if args.channels_last else ""))
    for name, n in params.items():
        print(f"  {name:26s} {n / 1e6:7.2f}M parameters ({100 * (n / params[REFERENCE] - 1):+.1f}% vs diffusers)")
    if "SR3UNet concat" in params and abs(params["SR3UNet concat"] / params[REFERENCE] - 1) > 0.10:
        raise SystemExit("parameter counts of SR3UNet concat and UNet2DModel differ by more than 10%")

    runs = [("forward", False, False, models), ("forward+backward", True, False, {**models, **variants})]
    if not args.no_bf16:
        runs += [("forward bf16 autocast", False, True, models), ("forward+backward bf16 autocast", True, True, models)]
    for title, train, bf16, ms in runs:
        ips = benchmark(ms, args.batch, size, config.num_classes, args.warmup, args.iters, train, bf16,
                        args.device, config.image_channels, args.channels_last)
        report(title, ips, params)


if __name__ == "__main__":
    main()
